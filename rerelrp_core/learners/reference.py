"""The two reference points every comparison needs: fine-tuning (the lower bound: no protection)
and joint training (the upper bound: it keeps every image it has seen)."""
import torch

from ..errors import UserError
from .base import Learner


class FineTune(Learner):
    """Trains every parameter on each new task with no protection: the lower bound."""
    method = "finetune"


class Joint(Learner):
    """Trains on the union of all tasks' data seen so far: the upper bound (it stores everything)."""
    method = "joint"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.seen_x, self.seen_rows = [], []
        self.image_bytes = []     # per task: bytes of the training images joint training keeps

    def training_data(self, task):
        if len(self.image_bytes) == task.index:
            self.seen_x.append(task.x_train)
            self.seen_rows.append(task.y_train + task.offset)
            self.image_bytes.append(task.x_train.numel())    # as uint8, one byte per pixel (like iCaRL's)
        return torch.cat(self.seen_x), torch.cat(self.seen_rows)

    def loss_columns(self, task):
        return slice(0, task.offset + task.n_classes)

    def stored_parts(self, k):
        """Head rows plus every training image of task k (one byte per pixel), which joint training
        must keep."""
        return {**super().stored_parts(k), "images": self.image_bytes[k]}

    def json_state(self):
        return {**super().json_state(), "image_bytes": self.image_bytes}

    def resume(self, finished_tasks):
        """Joint training keeps every image it saw; a saved run does not, so take them again."""
        self.seen_x = [t.x_train for t in finished_tasks]
        self.seen_rows = [t.y_train + t.offset for t in finished_tasks]

    def load_json_state(self, state, tasks):
        super().load_json_state(state, tasks)
        image_bytes = state.get("image_bytes", [])
        if not isinstance(image_bytes, list) or not all(isinstance(b, int) and b >= 0 for b in image_bytes):
            raise UserError(f"joint training's image_bytes ({image_bytes!r}) must be a list of byte counts")
        self.image_bytes = image_bytes
