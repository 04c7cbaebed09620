"""Task recognition from class Gaussians (ours; the default).

Each class of a finished task keeps Gaussians of its training images in a feature space that never
changes (:mod:`~rerelrp_core.recognition_spaces`: by default the input itself, averaged over a grid
of cells; before run format 9 the activations of task 0's frozen subnetwork), so they never go
stale and no image has to be kept.

After each task, each class of the task is split by k-means into up to ``components`` clusters of
its training images, and each cluster keeps a Gaussian (:mod:`~rerelrp_core.cluster_gaussians`). The
distance to a cluster is the Mahalanobis distance in its normalised, shrunk metric plus ``volume`` ·
s · log det of that metric (s the cluster's mean variance; the shape part of a Gaussian's
log-likelihood). The term is at most 0 (the normalised covariance has mean eigenvalue 1) and more
negative for a cluster whose images vary along few directions, scaled by how widely they vary;
chosen on validation images (bench/README.md, session 11), not derived. A class's distance is its
nearest cluster's, and an input belongs to the task of its nearest class. Task probabilities (shown,
never used to decide) are a softmax over the tasks of minus each task's nearest-class distance, in
units of the distance a cluster's own images have on average (trace(P Σ) of its stored covariance Σ
and its precision P), so the recognised task is always the most probable one.

What a task keeps is constant in the number of tasks: per cluster one mean, ``rank`` vectors and
scales and ``rank`` + width variances, whatever came before or after (bench/README.md: the choices,
measured on validation images).
"""
import torch

from .cluster_gaussians import PARTS, clusters, covariances, gaussian, precision, valid
from .errors import UserError
from .models import batched_logits
from .recognition_spaces import make_space
from .tasks import head_slices, task_of_rows


class ClassGaussians:
    """Per class of every finished task: Gaussians (one per cluster) of its training images in the
    recognition space (see the module docstring).

    Parameters
    ----------
    config: a :class:`~rerelrp_core.recognition.RecognitionConfig` (``space`` and its settings,
        ``components``, ``rank``, ``shrink``, ``volume``).
    """
    val_per_class = 0      # recognition uses training images only; validation stays unseen

    def __init__(self, config):
        self.config = config
        self.space = make_space(config)
        self.means = []        # per task: (clusters, w) float32
        self.vectors = []      # per task: (clusters, w, rank) int8 leading covariance eigenvectors
        self.scales = []       # per task: (clusters, rank) float32: each vector is int8 x its scale
        self.variances = []    # per task: (clusters, rank + w) float32: eigenvalues, then the residual
        self.classes = []      # per task: (clusters,) int64: the class (within the task) of each cluster
        self._clusters = None  # every task's clusters stacked: means, precisions, class rows, volumes
        self._typical = None   # the mean distance of a cluster's own images, over all clusters

    @property
    def n_tasks(self):
        return len(self.means)

    def ready(self, n_tasks):
        return n_tasks > 0 and self.n_tasks == n_tasks

    def features(self, learner, x):
        """``x`` in the recognition space."""
        return self.space.features(learner, x)

    # -- after a task ---------------------------------------------------------------------------
    def learn_task(self, learner, task, x_ref=None):
        """The cluster statistics of ``task``'s training images (a forward pass; nothing is kept
        but the statistics)."""
        if self.n_tasks != task.index:
            raise UserError(f"class statistics exist for {self.n_tasks} tasks; cannot add task {task.index}")
        values = self.features(learner, task.x_train)
        parts = {name: [] for name in PARTS}
        for c in range(task.n_classes):
            own = values[task.y_train == c]
            if len(own) < 2:
                raise UserError(f"class {task.class_names[c]!r} of task {task.index} has fewer than 2 "
                                "training images: no class statistics can be taken")
            labels = clusters(own, self.config.components, seed=1000 * task.index + c)
            for cluster in range(int(labels.max()) + 1):
                for name, value in zip(PARTS, (*gaussian(own[labels == cluster], self.config.rank), c)):
                    parts[name].append(value)
        self.means.append(torch.stack(parts["means"]).float())
        self.vectors.append(torch.stack(parts["vectors"]))
        self.scales.append(torch.stack(parts["scales"]))
        self.variances.append(torch.stack(parts["variances"]).float())
        self.classes.append(torch.tensor(parts["classes"], dtype=torch.int64))
        self._clusters = None

    def stacked_clusters(self):
        """Every task's clusters stacked: (clusters, w) means, (clusters, w, w) inverse normalised,
        shrunk covariances, (clusters,) class rows counted over all tasks and (clusters,) volume terms
        added to the distances (made once, with the typical own-cluster distance)."""
        if self._clusters is None:
            made = [covariances(*parts, self.config.shrink)
                    for parts in zip(self.vectors, self.scales, self.variances)]
            precisions = [precision(covariance, shrunk) for covariance, _, shrunk in made]
            volumes = [self.config.volume * scale * torch.linalg.slogdet(shrunk)[1]
                       for _, scale, shrunk in made]
            offsets = torch.tensor([0] + [int(c.max()) + 1 for c in self.classes]).cumsum(0)
            # _typical first: another thread sees _clusters set only once both are ready
            self._typical = float(torch.cat([own for _, own in precisions]).mean())
            self._clusters = (torch.cat(self.means).double(),
                              torch.cat([inverse for inverse, _ in precisions]),
                              torch.cat([c + offset for c, offset in zip(self.classes, offsets)]),
                              torch.cat(volumes))
        return self._clusters

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
                for t in range(self.n_tasks) for name in PARTS}

    @staticmethod
    def saved_in(tensors, n_tasks):
        return True     # class statistics exist since the first version that could choose them

    def load(self, tensors, learner, n_tasks):
        """The statistics of ``learner``'s first ``n_tasks`` tasks, checked against the width of the
        recognition space."""
        self._clusters, self._typical, self.space = None, None, make_space(self.config)
        for name in PARTS:
            setattr(self, name, [])
        if not n_tasks:
            return
        width = self.space.width(learner)
        rank = min(self.config.rank, width)
        for spec in learner.tasks[:n_tasks]:
            parts = {name: tensors.get(f"gaussians.{name}.t{spec.index}") for name in PARTS}
            if not valid(parts, spec.n_classes, width, rank):
                raise UserError(f"the class statistics of task {spec.index} are missing or have the wrong "
                                "shape")
            for name, part in parts.items():
                getattr(self, name).append(part)


def _bytes(tensor):
    return tensor.numel() * tensor.element_size()
