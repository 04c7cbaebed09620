"""What every rehearsal method shares: a buffer of stored training images, per output row, saved
with the run at one byte per pixel, and training over every class seen so far."""
import torch

from ..errors import UserError
from .base import Learner


class Rehearsal(Learner):
    """A learner that keeps stored images (``exemplars``: output row -> (k, C, H, W) images)."""

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.exemplars = {}

    def loss_columns(self, task):
        return slice(0, task.offset + task.n_classes)     # all classes seen so far

    def shrink_buffer(self, seen):
        """Cut every stored class to an equal share of ``config.memory`` for ``seen`` classes;
        returns that share."""
        per_class = max(1, self.config.memory // seen)
        for row in list(self.exemplars):
            self.exemplars[row] = self.exemplars[row][:per_class]
        return per_class

    def stored_parts(self, k):
        """Head rows plus task k's stored images, counted at one byte per pixel (uint8)."""
        rows = self.tasks[k].rows
        images = sum(len(self.exemplars.get(r, [])) for r in range(rows.start, rows.stop))
        channels, height, width = self.model.input_shape
        return {**super().stored_parts(k), "images": images * channels * height * width}

    def tensor_state(self):
        """The stored images, as uint8 when that is exact (images read from 8-bit files, like every
        bundled data set but digits), so the file holds what ``stored_parts`` counts."""
        tensors = {}
        for row, images in self.exemplars.items():
            as_bytes = torch.round(images * 255)
            exact = torch.equal(as_bytes / 255, images)
            tensors[f"exemplars.{row}"] = as_bytes.to(torch.uint8) if exact else images
        return tensors

    def load_tensor_state(self, tensors, n_tasks):
        self.exemplars = {}
        rows = self.seen_classes
        for name, images in tensors.items():
            row = name.split(".")[1] if name.startswith("exemplars.") else None
            if (row is None or not row.isdigit() or int(row) >= rows or images.dim() != 4 or not len(images)
                    or tuple(images.shape[1:]) != self.model.input_shape
                    or images.dtype not in (torch.uint8, torch.float32)):
                raise UserError(f"the stored exemplar images {name!r} do not fit this run")
            self.exemplars[int(row)] = images.float() / 255 if images.dtype == torch.uint8 else images
