"""Experience replay: a class-balanced buffer of stored training images (2,000 by default), a batch
of them mixed into every training batch, and a plain argmax over every class seen so far. The
strongest simple rehearsal baseline: ReReLRP, which stores no image, is measured against it."""
import torch

from ..seeding import generator
from .rehearsal import Rehearsal


class Replay(Rehearsal):
    """Experience replay with a class-balanced image buffer of ``config.memory`` images."""
    method = "replay"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.draw, self.stored, self.stored_rows = None, None, None

    def before_task(self, task):
        # its own generator, so the shuffling of the task's data is the other methods' shuffling
        self.draw = generator(self.config.seed * 1000 + 300 + task.index)
        if self.exemplars:       # the buffer as one tensor on the device, built once per task
            self.stored = torch.cat(list(self.exemplars.values())).to(self.device)
            self.stored_rows = torch.cat([torch.full((len(images),), row)
                                          for row, images in self.exemplars.items()]).to(self.device)

    def mix_batch(self, x, rows):
        """The task's batch plus as many images drawn at random from the buffer."""
        if not self.exemplars:
            return x, rows
        pick = torch.randint(len(self.stored), (len(x),), generator=self.draw).to(self.device)
        return torch.cat([x, self.stored[pick]]), torch.cat([rows, self.stored_rows[pick]])

    def consolidate(self, task, progress=None):
        """Equal shares for every class seen: old classes shrink, new classes get a random draw."""
        per_class = self.shrink_buffer(task.offset + task.n_classes)
        draw = generator(self.config.seed * 1000 + 600 + task.index)
        for c in range(task.n_classes):
            images = task.x_train[task.y_train == c]
            self.exemplars[task.offset + c] = images[torch.randperm(len(images), generator=draw)[:per_class]]
