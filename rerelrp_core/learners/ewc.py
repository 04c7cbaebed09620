"""EWC (elastic weight consolidation): a quadratic penalty keeps parameters near their old values,
weighted by the diagonal Fisher information (merged over tasks, alpha 0.5; lambda 50000, chosen on
validation images only: bench/tune.py on Split MNIST-5k, 500 / 5000 / 50000)."""
import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Learner


class EWC(Learner):
    """Elastic weight consolidation."""
    method = "ewc"
    alpha = 0.5          # weight of the old Fisher when merging with the new task's

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.strength = 50000.0 if config.reg_strength is None else config.reg_strength
        self.fisher, self.anchor = None, None

    def loss(self, x, rows, logits, columns):
        loss = super().loss(x, rows, logits, columns)
        if self.fisher is None or not self.strength:
            return loss
        # The penalty pulls parameter p back with stiffness strength * F_p; SGD with step lr is
        # unstable on a quadratic stiffer than about 2 / lr, and then training diverges (it did with
        # the default strength on small data sets, where the Fisher is large). Capping the stiffness
        # at 1 / lr - "back to the anchor in one step" - is the strongest pull SGD can follow; where
        # strength * F is below the cap, which the tuned setting mostly is, nothing changes.
        limit = 1.0 / (self.config.lr * self.strength)
        penalty = sum((f.clamp(max=limit) * (p - a) ** 2).sum()
                      for p, f, a in zip(self.model.parameters(), self.fisher, self.anchor))
        return loss + self.strength / 2 * penalty

    def consolidate(self, task, progress=None):
        """Diagonal empirical Fisher on the task's training data, merged into the running one."""
        self.model.eval()
        fisher = [torch.zeros_like(p) for p in self.model.parameters()]
        columns, count = self.loss_columns(task), 0
        for start in range(0, len(task.x_train), self.config.batch_size):
            x = task.x_train[start:start + self.config.batch_size].to(self.device)
            rows = (task.y_train[start:start + self.config.batch_size] + task.offset).to(self.device)
            self.model.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(x)[:, columns], rows - columns.start).backward()
            for f, p in zip(fisher, self.model.parameters()):
                if p.grad is not None:
                    f += p.grad.detach() ** 2 * len(x)
            count += len(x)
        fisher = [f / max(count, 1) for f in fisher]
        self.fisher = fisher if self.fisher is None else [
            self.alpha * old + (1 - self.alpha) * new for old, new in zip(self.fisher, fisher)]
        self.anchor = [p.detach().clone() for p in self.model.parameters()]
        self.model.zero_grad(set_to_none=True)

    def tensor_state(self):
        if self.fisher is None:
            return {}
        return {**{f"fisher.{i}": f for i, f in enumerate(self.fisher)},
                **{f"anchor.{i}": a for i, a in enumerate(self.anchor)}}

    def load_tensor_state(self, tensors, n_tasks):
        if "fisher.0" not in tensors:
            return
        shapes = [p.shape for p in self.model.parameters()]
        for kind in ("fisher", "anchor"):
            if any(f"{kind}.{i}" not in tensors or tensors[f"{kind}.{i}"].shape != shape
                   for i, shape in enumerate(shapes)):
                raise UserError(f"the stored EWC {kind} tensors are missing or do not fit this model")
        self.fisher = [tensors[f"fisher.{i}"].to(self.device) for i in range(len(shapes))]
        self.anchor = [tensors[f"anchor.{i}"].to(self.device) for i in range(len(shapes))]

    def stored_parts(self, k):
        """Head rows; the merged Fisher and the anchor weights (float32, one value per parameter
        each) replace the previous ones after every task, so they are counted once, under the
        last task."""
        parts = super().stored_parts(k)
        if self.fisher is not None and k == len(self.tasks) - 1:
            parts["fisher + anchor"] = sum(f.numel() * 4 for f in self.fisher) * 2
        return parts
