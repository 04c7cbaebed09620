"""LwF (learning without forgetting): knowledge distillation (temperature 2) from the model as it
was before the current task, on the old tasks' output rows (lambda 0.5, chosen on validation images
only: bench/tune.py on Split MNIST-5k, 0.5 / 1 / 2 / 4)."""
import copy

import torch
import torch.nn.functional as F

from .base import Learner


class LwF(Learner):
    """Learning without forgetting."""
    method = "lwf"
    temperature = 2.0

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.strength = 0.5 if config.reg_strength is None else config.reg_strength
        self.old_model, self.old_rows = None, 0

    def before_task(self, task):
        self.old_rows = task.offset
        self.old_model = copy.deepcopy(self.model).eval() if task.offset else None

    def loss(self, x, rows, logits, columns):
        loss = super().loss(x, rows, logits, columns)
        if self.old_model is None:
            return loss
        with torch.no_grad():
            target = F.softmax(self.old_model(x)[:, :self.old_rows] / self.temperature, dim=1)
        own = F.log_softmax(logits[:, :self.old_rows] / self.temperature, dim=1)
        return loss + self.strength * F.kl_div(own, target, reduction="batchmean") * self.temperature ** 2
