"""Task recognition from class Gaussians in the first task's subnetwork (ours; the default).

Subnetwork 0 never changes after task 0, so its unit activations are a feature space that stays the
same for ever: statistics of task t's classes taken in it when task t ends never go stale, and no
image has to be kept. After each task, every class of the task keeps the mean of its training
images' features in that space and their covariance: its ``rank`` leading eigenvectors (float16)
and eigenvalues plus the variance they leave out per feature, which is positive semi-definite
however the vectors are rounded. At test time each covariance is normalised to a mean variance of 1
and shrunk towards the identity (as FeCAM, arXiv 2309.14062, does for a frozen backbone). An input belongs to
the task of the class it is nearest to in Mahalanobis distance. Task probabilities (shown, never
used to decide) are a softmax over the tasks of minus each task's nearest-class distance, in units of
the distance a class's own images have on average (trace(P Σ) of its stored covariance Σ and its
precision P), so the recognised task is always the most probable one.

What a task keeps is constant in the number of tasks: per class one mean, ``rank`` vectors and
``rank`` + width variances, whatever came before or after.
"""
import torch
import torch.nn.functional as F

from .errors import UserError
from .models import batched_logits, inference_batch, mask_rows
from .tasks import head_slices, task_of_rows

GRID = 2     # conv activations are averaged over a GRID x GRID grid of the feature map


@torch.no_grad()
def unit_activations(model, masks, x, batch_size=None):
    """Every unit's activation of ``x`` in the subnetwork ``masks``, all unit layers concatenated:
    after a ReLU, conv maps averaged over a GRID x GRID grid (GRID² values per channel)."""
    device = next(model.parameters()).device
    batch_size = batch_size or inference_batch(device)
    was_training = model.training
    model.eval()
    layers = [layer.mask for layer in model.unit_layers]
    out = []
    try:
        for begin in range(0, len(x), batch_size):
            for layer in layers:
                layer.recorded = []
            with model.subnetwork(mask_rows(masks, begin, begin + batch_size, device)):
                model(x[begin:begin + batch_size].to(device))
            out.append(torch.cat([_pooled(layer.recorded[0]) for layer in layers], dim=1))
    finally:
        for layer in layers:
            layer.recorded = None
        model.train(was_training)
    return torch.cat(out).double()


def _pooled(activation):
    activation = activation.relu()
    if activation.dim() == 4:
        activation = F.adaptive_avg_pool2d(activation, GRID)
    return activation.flatten(1)


def space_columns(model, keep):
    """The columns of :func:`unit_activations` that subnetwork ``keep`` (one bool mask per unit
    layer) can make non-zero: the rest are 0 for every input and are left out."""
    columns = []
    for layer, kept in zip(model.unit_layers, keep):
        per_unit = GRID * GRID if layer.producers and isinstance(layer.producers[0], torch.nn.Conv2d) else 1
        columns.append(kept.bool().cpu().repeat_interleave(per_unit))
    return torch.cat(columns)


class ClassGaussians:
    """Per class of every finished task: a mean and a normalised, shrunk covariance of its
    training images in subnetwork 0's activation space (see the module docstring).

    Parameters
    ----------
    config: a :class:`~rerelrp_core.recognition.RecognitionConfig` (``shrink``, ``power``).
    """
    val_per_class = 0      # recognition uses training images only; validation stays unseen

    def __init__(self, config):
        self.config = config
        self.means = []        # per task: (classes, d) float32
        self.vectors = []      # per task: (classes, d, rank) float16 leading covariance eigenvectors
        self.variances = []    # per task: (classes, rank + d) float32: eigenvalues, then the residual
        self._precisions = None
        self._typical = None   # the mean distance of a class's own images, over all classes

    @property
    def n_tasks(self):
        return len(self.means)

    def ready(self, n_tasks):
        return n_tasks > 0 and self.n_tasks == n_tasks

    def features(self, learner, x):
        """``x`` in the recognition space: subnetwork 0's activations, power-transformed."""
        columns = space_columns(learner.model, learner.ownership.task_masks[0])
        values = unit_activations(learner.model, learner.task_masks(0), x)[:, columns]
        return values.clamp_min(0) ** self.config.power

    # -- after a task ---------------------------------------------------------------------------
    def learn_task(self, learner, task, x_ref=None):
        """The class statistics of ``task``'s training images (a forward pass; nothing is kept but
        the statistics)."""
        if self.n_tasks != task.index:
            raise UserError(f"class statistics exist for {self.n_tasks} tasks; cannot add task {task.index}")
        values = self.features(learner, task.x_train)
        means, vectors, variances = [], [], []
        for c in range(task.n_classes):
            own = values[task.y_train == c]
            if len(own) < 2:
                raise UserError(f"class {task.class_names[c]!r} of task {task.index} has fewer than 2 "
                                "training images: no class statistics can be taken")
            centred = own - own.mean(0)
            covariance = centred.T @ centred / len(own)
            eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
            rank = min(self.config.rank, len(covariance))
            kept, leading = eigenvalues[-rank:].clamp_min(0), eigenvectors[:, -rank:]
            residual = (covariance.diagonal() - (leading ** 2 * kept).sum(1)).clamp_min(0)
            means.append(own.mean(0))
            vectors.append(leading)
            variances.append(torch.cat([kept, residual]))
        self.means.append(torch.stack(means).float())
        self.vectors.append(torch.stack(vectors).half())
        self.variances.append(torch.stack(variances).float())
        self._precisions = None

    def precisions(self):
        """Per task, (classes, d, d) inverse normalised, shrunk covariances (made once, with the
        typical own-class distance)."""
        if self._precisions is None:
            made = [self._precision(v.double(), var.double()) for v, var in zip(self.vectors, self.variances)]
            # _typical first: another thread sees _precisions set only once both are ready
            self._typical = float(torch.cat([own for _, own in made]).mean())
            self._precisions = [precision for precision, _ in made]
        return self._precisions

    def _precision(self, vectors, variances):
        """The precision of every class and the mean distance of its own images, trace(P Σ)."""
        rank = vectors.shape[-1]
        covariance = (vectors * variances[:, None, :rank]) @ vectors.transpose(1, 2)
        covariance = covariance + torch.diag_embed(variances[:, rank:])
        scale = torch.diagonal(covariance, dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype)
        shrunk = (1 - self.config.shrink) * covariance / scale[:, None, None] + self.config.shrink * eye
        precision = torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
        return precision, torch.einsum("cde,ced->c", precision, covariance)

    # -- at test time ---------------------------------------------------------------------------
    def distances(self, values):
        """(N, classes seen) Mahalanobis distance of every row to every class, in task order."""
        return torch.cat([self.task_distances(values, k) for k in range(self.n_tasks)], dim=1)

    def task_distances(self, values, k):
        """(N, classes of task k) Mahalanobis distance of every row to task k's classes."""
        centred = values[:, None, :] - self.means[k].double()[None]   # (N, classes, d)
        return torch.einsum("ncd,cde,nce->nc", centred, self.precisions()[k], centred)

    def predict(self, learner, x, want_input=False):
        """Task-agnostic prediction: the nearest class's task, then that task's subnetwork picks the
        class. Returns ``task_probs`` (N, T), ``task``, ``predicted`` (global row), ``distances``
        (N, classes seen) and ``subnetworks`` (an LRP pass through every subnetwork when
        ``want_input``, for heatmaps; else None)."""
        distance = self.distances(self.features(learner, x))
        owner = task_of_rows(learner.tasks)
        nearest = torch.stack([distance[:, owner == t].min(1).values for t in range(len(learner.tasks))], 1)
        task_probs = torch.softmax(-nearest / max(self._typical, 1e-12), dim=1)
        task = owner[distance.argmin(1)]
        predicted = self.within_task(learner, x, task)
        sub = learner.subnetworks(x, want_input=True) if want_input else None
        return {"task_probs": task_probs.numpy(), "task": task, "predicted": predicted,
                "distances": distance, "subnetworks": sub}

    @staticmethod
    def within_task(learner, x, task):
        """Global row each input's own recognised subnetwork predicts (one pass, per-row masks)."""
        stacked = learner.stacked_task_masks(list(range(len(learner.tasks))))
        masks = [layer[task] for layer in stacked]
        logits = batched_logits(learner.model, x, masks).cpu()
        return logits.masked_fill(~head_slices(learner.tasks, logits.shape[1])[task], -torch.inf).argmax(1)

    def why(self, result, learner, row=0, n_features=None):
        """Why input ``row`` got its task: per task its probability, its nearest class and that
        class's distance (``n_features`` is the forests' and has no use here)."""
        distance = result["distances"][row]
        why, begin = [], 0
        for spec in learner.tasks:
            own = distance[begin:begin + spec.n_classes]
            nearest = int(own.argmin())
            why.append({"task": spec.index, "probability": float(result["task_probs"][row, spec.index]),
                        "class": spec.class_names[nearest], "distance": float(own[nearest])})
            begin += spec.n_classes
        return why

    # -- what is kept ---------------------------------------------------------------------------
    def stored_parts(self, k):
        if k >= self.n_tasks:
            return {}
        return {"class means": _bytes(self.means[k]),
                "class covariances": _bytes(self.vectors[k]) + _bytes(self.variances[k])}

    def tensor_state(self):
        tensors = {}
        for t, parts in enumerate(zip(self.means, self.vectors, self.variances)):
            for name, tensor in zip(("means", "vectors", "variances"), parts):
                tensors[f"gaussians.{name}.t{t}"] = tensor
        return tensors

    @staticmethod
    def saved_in(tensors, n_tasks):
        return True     # class statistics exist since the first version that could choose them

    def load(self, tensors, learner, n_tasks):
        """The class statistics of ``learner``'s first ``n_tasks`` tasks, checked against the width
        of the recognition space."""
        width = int(space_columns(learner.model, learner.ownership.task_masks[0]).sum()) if n_tasks else 0
        self.means, self.vectors, self.variances, self._precisions, self._typical = [], [], [], None, None
        rank = min(self.config.rank, width)
        for spec in learner.tasks[:n_tasks]:
            expected = {"means": ((spec.n_classes, width), torch.float32),
                        "vectors": ((spec.n_classes, width, rank), torch.float16),
                        "variances": ((spec.n_classes, rank + width), torch.float32)}
            parts = [tensors.get(f"gaussians.{name}.t{spec.index}") for name in expected]
            if any(part is None or part.shape != shape or part.dtype != dtype
                   or not torch.isfinite(part).all() for part, (shape, dtype) in zip(parts, expected.values())
                   ) or (parts[2] < 0).any():
                raise UserError(f"the class statistics of task {spec.index} are missing or have the wrong "
                                "shape")
            self.means.append(parts[0])
            self.vectors.append(parts[1])
            self.variances.append(parts[2])


def _bytes(tensor):
    return tensor.numel() * tensor.element_size()
