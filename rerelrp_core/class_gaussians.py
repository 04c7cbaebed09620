"""Task recognition from class Gaussians in the first task's subnetwork (ours; the default).

Subnetwork 0 never changes after task 0, so its unit activations are a feature space that stays the
same for ever: statistics of task t's classes taken in it when task t ends never go stale, and no
image has to be kept. The space: every unit's activation after its ReLU, conv maps averaged over a
grid of cells (``first_grid`` for the first conv layer, whose fine detail tells similar classes
apart, ``grid`` for the others), raised to ``power``, and, when it is wider than ``width``, projected
onto ``width`` fixed random orthonormal directions (made from a constant seed, so nothing is stored),
which bounds what a class keeps whatever the size of subnetwork 0.

After each task, each class of the task is split by k-means into up to ``components`` clusters of
its training images, and each cluster keeps a Gaussian: its mean, and its covariance as the
``rank`` leading eigenvectors (int8, one scale per vector) with their eigenvalues plus the variance
they leave out per feature, which is positive semi-definite however the vectors are rounded. At test
time each covariance is normalised to a mean variance of 1 and shrunk towards the identity (as
FeCAM, arXiv 2309.14062, does for a frozen backbone). The distance to a cluster is the Mahalanobis
distance in that metric plus ``volume`` · s · log det of the normalised, shrunk covariance (s the
cluster's mean variance; the shape part of a Gaussian's log-likelihood). The term is at most 0 (the
normalised covariance has mean eigenvalue 1) and more negative for a cluster whose images vary along
few directions, scaled by how widely they vary; chosen on validation images (bench/README.md, session
11), not derived. A class's distance is its nearest cluster's, and an input belongs to the task of
its nearest class. Task probabilities
(shown, never used to decide) are a softmax over the tasks of minus each task's nearest-class
distance, in units of the distance a cluster's own images have on average (trace(P Σ) of its stored
covariance Σ and its precision P), so the recognised task is always the most probable one.

What a task keeps is constant in the number of tasks: per cluster one mean, ``rank`` vectors and
scales and ``rank`` + width variances, whatever came before or after (bench/README.md: the choices,
measured on validation images).
"""
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from .compact import CompactSubnetwork
from .errors import UserError
from .models import batched_logits, evaluating, inference_batch, mask_rows
from .relevance import recording
from .tasks import head_slices, task_of_rows

PROJECTION_SEED = 0      # the random directions are the same in every run: nothing to store
MIN_CLUSTER = 20         # training images a cluster needs for a covariance of its own


def layer_grids(model, grid=2, first_grid=None):
    """Per unit layer, the side of the grid its maps are averaged over (None: a vector or a token
    sequence per image)."""
    grids, first = [], True
    for layer in model.unit_layers:
        if layer.map_dims == 4:
            grids.append(first_grid if first and first_grid else grid)
            first = False
        else:
            grids.append(None)
    return grids


@torch.no_grad()
def unit_activations(model, masks, x, batch_size=None, grids=None):
    """Every unit's activation of ``x`` in the subnetwork ``masks``, all unit layers concatenated:
    after a ReLU, conv maps averaged over a g x g grid (g² values per channel; ``grids`` gives g
    per layer, by default :func:`layer_grids`)."""
    grids = grids or layer_grids(model)
    device = next(model.parameters()).device
    batch_size = batch_size or inference_batch(device)
    out = []
    with evaluating(model), recording(model) as records:
        for begin in range(0, len(x), batch_size):
            records.clear()     # one forward's outputs, in unit-layer order
            with model.subnetwork(mask_rows(masks, begin, begin + batch_size, device)):
                model(x[begin:begin + batch_size].to(device))
            out.append(_pooled_layers(records, grids))
    return torch.cat(out).double()


def _pooled_layers(activations, grids):
    """One row per input: every layer's activations after a ReLU, conv maps averaged over their
    layer's grid, concatenated."""
    return torch.cat([_pooled(activation, grid) for activation, grid in zip(activations, grids)], 1)


def _pooled(activation, grid):
    activation = activation.relu()
    if activation.dim() == 4:
        activation = F.adaptive_avg_pool2d(activation, grid)
    elif activation.dim() == 3:         # (N, units, tokens): one value per unit, the tokens' mean
        activation = activation.mean(2)
    return activation.flatten(1)


def space_columns(model, keep, grids=None):
    """The columns of :func:`unit_activations` that subnetwork ``keep`` (one bool mask per unit
    layer) can make non-zero: the rest are 0 for every input and are left out."""
    grids = grids or layer_grids(model)
    return torch.cat([kept.bool().cpu().repeat_interleave(g * g if g else 1)
                      for kept, g in zip(keep, grids)])


def projection(width, directions):
    """(width, directions) orthonormal random directions, the same for every run; None (no
    projection) when ``directions`` is 0 or the space is not wider."""
    if not directions or width <= directions:
        return None
    draw = torch.Generator().manual_seed(PROJECTION_SEED)
    return torch.linalg.qr(torch.randn(width, directions, generator=draw, dtype=torch.float64))[0]


def clusters(values, most, seed):
    """Cluster labels of ``values`` (rows): k-means with up to ``most`` clusters, fewer where a
    cluster would hold under MIN_CLUSTER rows (a class with few images keeps one Gaussian)."""
    for k in range(min(most, len(values) // MIN_CLUSTER), 1, -1):
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(values.float().numpy())
        if np.bincount(labels, minlength=k).min() >= MIN_CLUSTER:
            return torch.from_numpy(labels).long()
    return torch.zeros(len(values), dtype=torch.int64)


def quantised(vectors):
    """int8 vectors and one float32 scale per vector (per last-axis column)."""
    scales = (vectors.abs().amax(-2) / 127).clamp_min(1e-30)
    return (vectors / scales.unsqueeze(-2)).round().clamp(-127, 127).to(torch.int8), scales.float()


class ClassGaussians:
    """Per class of every finished task: Gaussians (one per cluster) of its training images in
    subnetwork 0's activation space (see the module docstring).

    Parameters
    ----------
    config: a :class:`~rerelrp_core.recognition.RecognitionConfig` (``grid``, ``first_grid``,
        ``power``, ``width``, ``components``, ``rank``, ``shrink``, ``volume``).
    """
    val_per_class = 0      # recognition uses training images only; validation stays unseen
    PARTS = ("means", "vectors", "scales", "variances", "classes")

    def __init__(self, config):
        self.config = config
        self.means = []        # per task: (clusters, w) float32
        self.vectors = []      # per task: (clusters, w, rank) int8 leading covariance eigenvectors
        self.scales = []       # per task: (clusters, rank) float32: each vector is int8 x its scale
        self.variances = []    # per task: (clusters, rank + w) float32: eigenvalues, then the residual
        self.classes = []      # per task: (clusters,) int64: the class (within the task) of each cluster
        self._clusters = None  # every task's clusters stacked: means, precisions, class rows, volumes
        self._typical = None   # the mean distance of a cluster's own images, over all clusters
        self._space = None     # (grids, columns, projection) of subnetwork 0's space, made once
        self._compact = None   # subnetwork 0 as a network of its own units (False: not possible)

    @property
    def n_tasks(self):
        return len(self.means)

    def ready(self, n_tasks):
        return n_tasks > 0 and self.n_tasks == n_tasks

    def space(self, learner):
        """Per layer its grid, the columns of subnetwork 0's activations that can be non-zero, and
        the projection (None when the space is not wider than ``width``)."""
        if self._space is None:
            grids = layer_grids(learner.model, self.config.grid, self.config.first_grid)
            columns = space_columns(learner.model, learner.ownership.task_masks[0], grids)
            self._space = grids, columns, projection(int(columns.sum()), self.config.width)
        return self._space

    def features(self, learner, x):
        """``x`` in the recognition space: subnetwork 0's activations, power-transformed and
        projected. Where the architecture allows, subnetwork 0 runs as a network of its own units
        only (:mod:`~rerelrp_core.compact`), a fraction of a masked pass."""
        grids, columns, project = self.space(learner)
        if self._compact is None:
            self._compact = CompactSubnetwork.of(learner.model, learner.ownership.task_masks[0]) or False
        if self._compact:
            values = torch.cat([_pooled_layers(batch, grids) for batch in self._compact.batches(x)]).double()
        else:
            values = unit_activations(learner.model, learner.task_masks(0), x, grids=grids)[:, columns]
        values = values.clamp_min(0) ** self.config.power
        return values if project is None else values @ project

    # -- after a task ---------------------------------------------------------------------------
    def learn_task(self, learner, task, x_ref=None):
        """The cluster statistics of ``task``'s training images (a forward pass; nothing is kept
        but the statistics)."""
        if self.n_tasks != task.index:
            raise UserError(f"class statistics exist for {self.n_tasks} tasks; cannot add task {task.index}")
        values = self.features(learner, task.x_train)
        parts = {name: [] for name in self.PARTS}
        for c in range(task.n_classes):
            own = values[task.y_train == c]
            if len(own) < 2:
                raise UserError(f"class {task.class_names[c]!r} of task {task.index} has fewer than 2 "
                                "training images: no class statistics can be taken")
            labels = clusters(own, self.config.components, seed=1000 * task.index + c)
            for cluster in range(int(labels.max()) + 1):
                for name, value in zip(self.PARTS, (*self._gaussian(own[labels == cluster]), c)):
                    parts[name].append(value)
        self.means.append(torch.stack(parts["means"]).float())
        self.vectors.append(torch.stack(parts["vectors"]))
        self.scales.append(torch.stack(parts["scales"]))
        self.variances.append(torch.stack(parts["variances"]).float())
        self.classes.append(torch.tensor(parts["classes"], dtype=torch.int64))
        self._clusters = None

    def _gaussian(self, own):
        """Mean, int8 leading eigenvectors, their scales, and eigenvalues + residual variances."""
        centred = own - own.mean(0)
        covariance = centred.T @ centred / len(own)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        rank = min(self.config.rank, len(covariance))
        kept = eigenvalues[-rank:].clamp_min(0)
        vectors, scales = quantised(eigenvectors[:, -rank:])
        leading = vectors.double() * scales.double()
        residual = (covariance.diagonal() - (leading ** 2 * kept).sum(1)).clamp_min(0)
        return own.mean(0), vectors, scales, torch.cat([kept, residual])

    def stacked_clusters(self):
        """Every task's clusters stacked: (clusters, w) means, (clusters, w, w) inverse normalised,
        shrunk covariances, (clusters,) class rows counted over all tasks and (clusters,) volume terms
        added to the distances (made once, with the typical own-cluster distance)."""
        if self._clusters is None:
            covariances = list(self.covariances())
            made = [self._precision(covariance, shrunk) for covariance, _, shrunk in covariances]
            volumes = [self.config.volume * scale * torch.linalg.slogdet(shrunk)[1]
                       for _, scale, shrunk in covariances]
            offsets = torch.tensor([0] + [int(c.max()) + 1 for c in self.classes]).cumsum(0)
            # _typical first: another thread sees _clusters set only once both are ready
            self._typical = float(torch.cat([own for _, own in made]).mean())
            self._clusters = (torch.cat(self.means).double(), torch.cat([precision for precision, _ in made]),
                              torch.cat([c + offset for c, offset in zip(self.classes, offsets)]),
                              torch.cat(volumes))
        return self._clusters

    def covariances(self):
        """Per task, its clusters' stored covariances Σ (clusters, w, w), their mean variances s
        (clusters,) and the normalised, shrunk covariances (1 - shrink) Σ / s + shrink I, in float64."""
        for vectors, scales, variances in zip(self.vectors, self.scales, self.variances):
            vectors, variances = vectors.double() * scales.double().unsqueeze(1), variances.double()
            rank = vectors.shape[-1]
            covariance = (vectors * variances[:, None, :rank]) @ vectors.transpose(1, 2)
            covariance = covariance + torch.diag_embed(variances[:, rank:])
            scale = torch.diagonal(covariance, dim1=1, dim2=2).mean(1).clamp_min(1e-12)
            eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype)
            yield covariance, scale, (1 - self.config.shrink) * covariance / scale[:, None, None] \
                + self.config.shrink * eye

    @staticmethod
    def _precision(covariance, shrunk):
        """The precision of every cluster and the mean distance of its own images, trace(P Σ)."""
        precision = torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
        return precision, torch.einsum("cde,ced->c", precision, covariance)

    # -- at test time ---------------------------------------------------------------------------
    def cluster_distances(self, values):
        """(N, clusters) distance of every row to every task's clusters, Mahalanobis plus the volume
        term (one batched product)."""
        means, precisions, _, volumes = self.stacked_clusters()
        centred = values[None] - means[:, None]                           # (clusters, N, w)
        return (torch.bmm(centred, precisions) * centred).sum(2).T + volumes

    def class_distances(self, per_cluster):
        """(N, classes seen) distance of every row to every class, in task order: the distance to
        the class's nearest cluster, from the (N, clusters) ``per_cluster`` distances."""
        classes = self.stacked_clusters()[2]
        return per_cluster.new_full((len(per_cluster), int(classes.max()) + 1), torch.inf).scatter_reduce(
            1, classes.expand(len(per_cluster), -1), per_cluster, "amin")

    def distances(self, values):
        """(N, classes seen) distance of every row of ``values`` to every class, in task order."""
        return self.class_distances(self.cluster_distances(values))

    def tasks_of(self, distance, tasks):
        """The recognised task (the nearest class's) and the (N, tasks) task probabilities of rows
        whose (N, classes) ``distance`` to the classes of ``tasks`` is given."""
        owner = task_of_rows(tasks)
        nearest = torch.stack([distance[:, owner == t].min(1).values for t in range(len(tasks))], 1)
        return owner[distance.argmin(1)], torch.softmax(-nearest / max(self._typical, 1e-12), dim=1)

    def predict(self, learner, x, want_input=False):
        """Task-agnostic prediction: the nearest class's task, then that task's subnetwork picks the
        class. Returns ``task_probs`` (N, T), ``task``, ``predicted`` (global row), ``distances``
        (N, classes seen), ``cluster_distances`` (N, clusters) and ``subnetworks`` (an LRP pass
        through every subnetwork when ``want_input``, for heatmaps; else None)."""
        per_cluster = self.cluster_distances(self.features(learner, x))
        distance = self.class_distances(per_cluster)
        task, task_probs = self.tasks_of(distance, learner.tasks)
        predicted = self.within_task(learner, x, task)
        sub = learner.subnetworks(x, want_input=True) if want_input else None
        return {"task_probs": task_probs.numpy(), "task": task, "predicted": predicted,
                "distances": distance, "cluster_distances": per_cluster, "subnetworks": sub}

    @staticmethod
    def within_task(learner, x, task):
        """Global row each input's own recognised subnetwork predicts (one pass, per-row masks)."""
        stacked = learner.stacked_task_masks(list(range(len(learner.tasks))))
        masks = [layer[task] for layer in stacked]
        logits = batched_logits(learner.model, x, masks).cpu()
        return logits.masked_fill(~head_slices(learner.tasks, logits.shape[1])[task], -torch.inf).argmax(1)

    def why(self, result, learner, row=0, n_features=None):
        """Why input ``row`` got its task: per task its probability, its nearest class, that class's
        distance and its two parts, the Mahalanobis distance to the class's nearest cluster and that
        cluster's volume term (``n_features`` is the forests' and has no use here)."""
        distance, per_cluster = result["distances"][row], result["cluster_distances"][row]
        _, _, classes, volumes = self.stacked_clusters()
        why, begin = [], 0
        for spec in learner.tasks:
            nearest = int(distance[begin:begin + spec.n_classes].argmin())
            mine = (classes == begin + nearest).nonzero()[:, 0]
            cluster = int(mine[per_cluster[mine].argmin()])
            why.append({"task": spec.index, "probability": float(result["task_probs"][row, spec.index]),
                        "class": spec.class_names[nearest], "distance": float(distance[begin + nearest]),
                        "mahalanobis": float(per_cluster[cluster] - volumes[cluster]),
                        "volume term": float(volumes[cluster])})
            begin += spec.n_classes
        return why

    # -- what is kept ---------------------------------------------------------------------------
    def stored_parts(self, k):
        if k >= self.n_tasks:
            return {}
        return {"class means": _bytes(self.means[k]),
                "class covariances": sum(_bytes(getattr(self, name)[k])
                                         for name in ("vectors", "scales", "variances", "classes"))}

    def tensor_state(self):
        return {f"gaussians.{name}.t{t}": getattr(self, name)[t]
                for t in range(self.n_tasks) for name in self.PARTS}

    @staticmethod
    def saved_in(tensors, n_tasks):
        return True     # class statistics exist since the first version that could choose them

    def load(self, tensors, learner, n_tasks):
        """The statistics of ``learner``'s first ``n_tasks`` tasks, checked against the width of the
        recognition space."""
        self._clusters, self._typical, self._space, self._compact = None, None, None, None
        for name in self.PARTS:
            setattr(self, name, [])
        if not n_tasks:
            return
        _, columns, project = self.space(learner)
        width = int(columns.sum()) if project is None else project.shape[1]
        rank = min(self.config.rank, width)
        for spec in learner.tasks[:n_tasks]:
            parts = {name: tensors.get(f"gaussians.{name}.t{spec.index}") for name in self.PARTS}
            if not _valid(parts, spec.n_classes, width, rank):
                raise UserError(f"the class statistics of task {spec.index} are missing or have the wrong "
                                "shape")
            for name, part in parts.items():
                getattr(self, name).append(part)


def _valid(parts, n_classes, width, rank):
    """Whether a task's stored statistics fit ``n_classes`` classes in a space ``width`` wide."""
    if any(part is None for part in parts.values()):
        return False
    clusters = len(parts["classes"])
    expected = {"means": ((clusters, width), (torch.float32,)),
                "vectors": ((clusters, width, rank), (torch.int8, torch.float16)),
                "scales": ((clusters, rank), (torch.float32,)),
                "variances": ((clusters, rank + width), (torch.float32,)),
                "classes": ((clusters,), (torch.int64,))}
    for name, (shape, dtypes) in expected.items():
        part = parts[name]
        if tuple(part.shape) != shape or part.dtype not in dtypes:
            return False
        if part.is_floating_point() and not torch.isfinite(part).all():
            return False
    return (bool((parts["variances"] >= 0).all())
            and torch.equal(torch.unique(parts["classes"]), torch.arange(n_classes)))


def _bytes(tensor):
    return tensor.numel() * tensor.element_size()
