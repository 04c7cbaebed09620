"""iCaRL (incremental classifier and representation learning): a fixed buffer of stored images
(2,000) filled by herding, sigmoid classification with distillation, and a nearest-mean-of-exemplars
classifier. One of the rehearsal baselines ReReLRP is measured against (they store images; ReReLRP
does not)."""
import copy

import torch
import torch.nn.functional as F

from .rehearsal import Rehearsal


class ICaRL(Rehearsal):
    """Incremental classifier and representation learning, with a fixed image buffer."""
    method = "icarl"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.means = None            # (seen classes, features) normalised class means
        self.old_model, self.old_rows = None, 0

    def training_data(self, task):
        x, rows = [task.x_train], [task.y_train + task.offset]
        for row, images in self.exemplars.items():
            x.append(images)
            rows.append(torch.full((len(images),), row))
        return torch.cat(x), torch.cat(rows)

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
        per_class = self.shrink_buffer(task.offset + task.n_classes)
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

    def mean_scores(self, x, rows):
        """Minus the distance of each input's features to the class mean of every row in ``rows``
        (the nearest mean scores highest)."""
        return -torch.cdist(self.features(x), self.means[rows]).cpu()

    def taw_scores(self, x, k):
        rows = self.tasks[k].rows
        return self.mean_scores(x, list(range(rows.start, rows.stop)))

    def tag_scores(self, x):
        return self.mean_scores(x, list(range(self.seen_classes)))

    def load_tensor_state(self, tensors, n_tasks):
        super().load_tensor_state(tensors, n_tasks)
        if self.exemplars:
            self.update_means()

