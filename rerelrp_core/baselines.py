"""The baselines the paper compares against, on the same engine, data, model and training budget.

* EWC: a quadratic penalty keeps parameters near their old values, weighted by the diagonal Fisher
  information (merged over tasks, alpha 0.5; lambda 50000).
* LwF: knowledge distillation (temperature 2) from the model as it was before the current task,
  on the old tasks' output rows (lambda 0.5).
* iCaRL: a fixed buffer of stored images (2,000) filled by herding, sigmoid classification with
  distillation, and a nearest-mean-of-exemplars classifier.

Defaults follow the common FACIL settings, except the two lambdas: they were chosen on validation
images only (bench/tune.py on Split MNIST-5k: EWC 500 / 5000 / 50000, LwF 0.5 / 1 / 2 / 4); nothing
was tuned on test data.
"""
import copy

import torch
import torch.nn.functional as F

from .errors import UserError
from .learner import Learner


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
        if self.fisher is None:
            return loss
        penalty = sum((f * (p - a) ** 2).sum()
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
        if self.fisher is not None and k == len(self.heads) - 1:
            parts["fisher + anchor"] = sum(f.numel() * 4 for f in self.fisher) * 2
        return parts


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


class ICaRL(Learner):
    """Incremental classifier and representation learning, with a fixed image buffer."""
    method = "icarl"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.exemplars = {}          # output row -> (k, C, H, W) stored images
        self.means = None            # (seen classes, features) normalised class means
        self.old_model, self.old_rows = None, 0

    def training_data(self, task):
        x, rows = [task.x_train], [task.y_train + task.offset]
        for row, images in self.exemplars.items():
            x.append(images)
            rows.append(torch.full((len(images),), row))
        return torch.cat(x), torch.cat(rows)

    def loss_columns(self, task):
        return slice(0, task.offset + task.n_classes)     # all classes seen so far

    def before_task(self, task):
        self.old_rows = task.offset
        self.old_model = copy.deepcopy(self.model).eval() if task.offset else None

    def loss(self, x, rows, logits, columns):
        logits = logits[:, columns]
        target = F.one_hot(rows, logits.shape[1]).float()
        if self.old_model is not None:
            with torch.no_grad():
                target[:, :self.old_rows] = torch.sigmoid(self.old_model(x)[:, :self.old_rows])
        return F.binary_cross_entropy_with_logits(logits, target)

    @torch.no_grad()
    def features(self, x):
        """Normalised penultimate features (the backbone's output) of ``x``."""
        self.model.eval()
        out = torch.cat([self.model.backbone(x[i:i + 1024].to(self.device)) for i in range(0, len(x), 1024)])
        return F.normalize(out, dim=1)

    def consolidate(self, task, progress=None):
        """Herding selection for the new classes, shrink old classes to an equal share, class means."""
        seen = task.offset + task.n_classes
        per_class = max(1, self.config.memory // seen)
        for row in list(self.exemplars):
            self.exemplars[row] = self.exemplars[row][:per_class]
        for c in range(task.n_classes):
            images = task.x_train[task.y_train == c]
            self.exemplars[task.offset + c] = images[self.herding(images, per_class)]
        self.update_means()

    def herding(self, images, count):
        """Indices of ``count`` images whose running feature mean tracks the class mean best."""
        feats = self.features(images)
        mean = feats.mean(0)
        chosen, total = [], torch.zeros_like(mean)
        available = torch.ones(len(images), dtype=torch.bool, device=feats.device)
        for k in range(min(count, len(images))):
            distance = ((mean - (total + feats) / (k + 1)) ** 2).sum(1)
            distance[~available] = torch.inf
            pick = int(distance.argmin())
            chosen.append(pick)
            available[pick] = False
            total += feats[pick]
        return torch.tensor(chosen, dtype=torch.long)

    def update_means(self):
        rows = sorted(self.exemplars)
        self.means = F.normalize(torch.stack([self.features(self.exemplars[r]).mean(0) for r in rows]), dim=1)

    def nearest_mean(self, x, rows):
        """Output row (among ``rows``) whose class mean is closest to each input's features."""
        distance = torch.cdist(self.features(x), self.means[rows])
        return torch.as_tensor(rows)[distance.argmin(1).cpu()]

    def predict_taw(self, x, k):
        offset, n = self.heads[k]
        return self.nearest_mean(x, list(range(offset, offset + n))) - offset

    def predict_tag(self, x):
        return self.nearest_mean(x, list(range(sum(n for _, n in self.heads))))

    def stored_parts(self, k):
        """Head rows plus task k's stored exemplars, counted at one byte per pixel (uint8)."""
        offset, n = self.heads[k]
        images = sum(len(self.exemplars.get(r, [])) for r in range(offset, offset + n))
        channels, height, width = self.model.input_shape
        return {**super().stored_parts(k), "images": images * channels * height * width}

    def tensor_state(self):
        """The exemplars, as uint8 when that is exact (images read from 8-bit files, like every
        bundled data set but digits), so the file holds what ``stored_parts`` counts."""
        tensors = {}
        for row, images in self.exemplars.items():
            as_bytes = torch.round(images * 255)
            exact = torch.equal(as_bytes / 255, images)
            tensors[f"exemplars.{row}"] = as_bytes.to(torch.uint8) if exact else images
        return tensors

    def load_tensor_state(self, tensors, n_tasks):
        self.exemplars = {}
        rows = sum(n for _, n in self.heads)
        for name, images in tensors.items():
            row = name.split(".")[1] if name.startswith("exemplars.") else None
            if (row is None or not row.isdigit() or int(row) >= rows or images.dim() != 4 or not len(images)
                    or tuple(images.shape[1:]) != self.model.input_shape
                    or images.dtype not in (torch.uint8, torch.float32)):
                raise UserError(f"the stored exemplar images {name!r} do not fit this run")
            self.exemplars[int(row)] = images.float() / 255 if images.dtype == torch.uint8 else images
        if self.exemplars:
            self.update_means()

