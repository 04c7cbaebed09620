"""The parts of task recognition: its settings, the chain rule, one binary forest recogniser, and
column selection. :mod:`~rerelrp_core.task_recognition` puts them together for a learner.

After task t, every subnetwork m <= t sees task t's reference (and validation-slice) images; the
per-unit relevance vector each produces, conditioned on the subnetwork's *own* prediction, is stored
(the images are not). Recogniser m is a binary random forest telling "task m's own samples through
m" from "samples of later tasks through m". At test time the recognisers are combined as a chain:
P(T=0) = p0, P(T=i) = p_i * prod_{j<i}(1 - p_j), and the last task takes the rest.

All subnetworks run in one batched pass (:mod:`~rerelrp_core.subnetworks`).
"""
from dataclasses import dataclass, fields

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from .errors import UserError
from .forest_paths import FlatForest
from .recognition_spaces import SPACES

CHAINS = ("chain", "chain-full")
KINDS = ("gaussian", "forest")
# The acc_drop a run is pruned under when none is given: the paper's 1 point with the relevance
# forests (so the faithful preset stays the paper's method); 0.25 with class Gaussians, chosen on
# validation images (bench/README.md, session 11): tasks that keep more units have a higher task-aware
# accuracy (and, in the subnetwork space, a wider recognition space).
ACC_DROP = {"gaussian": 0.25, "forest": 1.0}
RECOGNITION_PRESETS = {
    "faithful": {"kind": "forest", "top_k": 40, "chain": "chain", "with_logits": False, "context": False,
                 "val_per_class": 100},
    "forest": {"kind": "forest"},
    "subnetwork": {"space": "subnetwork"},
    "ours": {},
}


@dataclass
class RecognitionConfig:
    """How tasks are recognised. The defaults are ours: class Gaussians of the input averaged over a
    grid of cells (:mod:`~rerelrp_core.class_gaussians`, chosen on validation images of class orders
    never reported, see bench/README.md).
    ``RECOGNITION_PRESETS["faithful"]`` is the paper's relevance-forest chain and ``forest`` our
    previous default (the chain with ``context`` and 300 validation images per class).

    Parameters
    ----------
    kind: ``gaussian`` (class Gaussians) or ``forest`` (the relevance random-forest chain; every
        setting below but ``shrink`` and ``power`` belongs to it).
    space: gaussian: the space the class Gaussians live in (:mod:`~rerelrp_core.recognition_spaces`):
        ``input`` (the input image, the same whatever the class order) or ``subnetwork`` (the
        activations of task 0's subnetwork, the default before run format 9).
    input_grid: gaussian, input space: each channel is averaged over an input_grid x input_grid
        grid of cells.
    rank: gaussian: leading eigenvectors kept per covariance (what a cluster stores grows with it).
    shrink: gaussian: how far each normalised covariance is pulled towards the identity.
    power: gaussian: activations are raised to this power first (< 1 evens out heavy tails).
    grid, first_grid: gaussian, subnetwork space: conv maps are averaged over a grid x grid grid of
        cells (the first conv layer over first_grid x first_grid).
    width: gaussian: a wider space is projected onto this many fixed random directions (0 = never),
        which bounds what a cluster stores.
    components: gaussian: Gaussians (k-means clusters of its training images) per class, at most.
    volume: gaussian: weight of each cluster's log-volume in its distance (0 = the distance alone).
    top_k: features per recogniser: the units with highest mean relevance on the recogniser's own
        task (0 = every unit).
    trees, max_depth, min_samples_leaf: random-forest settings (criterion log_loss, max_features
        log2, no bootstrap, as in the research code).
    chain: ``chain`` (P(T=i) = p_i prod_{j<i}(1-p_j)) or ``chain-full`` (the paper figure's variant:
        every task's score also multiplies in the complements of the later recognisers).
    with_logits: add the subnetwork's own logits to its relevance features (ours; off = faithful).
    context: recogniser m also sees the input's relevance in the earlier subnetworks 0..m-1 (ours;
        off = faithful). Those vectors exist for task m's and later tasks' samples alike, and the
        input runs through every subnetwork anyway; ``top_k`` then applies per subnetwork.
    val_per_class: validation images per class added to the reference set for recognition (the
        research code used the reference set and a validation slice; we take 100 as faithful).
    """
    top_k: int = 40
    trees: int = 300
    max_depth: int = 40
    min_samples_leaf: int = 5
    chain: str = "chain"
    with_logits: bool = False
    context: bool = True
    val_per_class: int = 300
    kind: str = "gaussian"
    space: str = "input"
    input_grid: int = 14
    rank: int = 32
    shrink: float = 0.1
    power: float = 0.5
    grid: int = 2
    first_grid: int = 3
    width: int = 128
    components: int = 4
    volume: float = 0.03


def recognition_config(values):
    """A checked RecognitionConfig from a dict of settings (unknown names and bad values are
    refused with one sentence)."""
    known = {f.name for f in fields(RecognitionConfig)}
    if set(values) - known:
        raise UserError(f"Unknown recognition settings: {', '.join(sorted(set(values) - known))}.")
    config = RecognitionConfig(**values)
    minimum = {"top_k": 0, "trees": 1, "max_depth": 1, "min_samples_leaf": 1, "val_per_class": 0, "rank": 1,
               "grid": 1, "first_grid": 1, "input_grid": 1, "width": 0, "components": 1}
    for name, low in minimum.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"Recognition setting {name} must be a whole number of at least {low}; "
                            f"got {value!r}.")
    if config.space not in SPACES:
        raise UserError(f"Recognition setting space must be one of {', '.join(SPACES)}; "
                        f"got {config.space!r}.")
    if config.kind not in KINDS:
        raise UserError(f"Recognition setting kind must be one of {', '.join(KINDS)}; got {config.kind!r}.")
    for name, low, high in (("shrink", 0.0, 1.0), ("power", 0.0, 4.0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
            raise UserError(f"Recognition setting {name} must be a number above {low:g} and at most "
                            f"{high:g}; got {value!r}.")
    if isinstance(config.volume, bool) or not isinstance(config.volume, (int, float)) \
            or not 0 <= config.volume <= 1:
        raise UserError(f"Recognition setting volume must be a number from 0 to 1; got {config.volume!r}.")
    if config.chain not in CHAINS:
        raise UserError(f"Recognition setting chain must be one of {', '.join(CHAINS)}; "
                        f"got {config.chain!r}.")
    for name in ("with_logits", "context"):
        if not isinstance(getattr(config, name), bool):
            raise UserError(f"Recognition setting {name} must be True or False; "
                            f"got {getattr(config, name)!r}.")
    return config


def chain_probabilities(p, chain="chain"):
    """Combine recogniser outputs p (N, T-1) into task probabilities (N, T) that sum to 1."""
    if chain not in CHAINS:
        raise UserError(f"Unknown chain '{chain}'. Use one of: {', '.join(CHAINS)}.")
    n, k = p.shape
    out = np.zeros((n, k + 1))
    rest = np.ones(n)
    for i in range(k):
        out[:, i] = p[:, i] * rest
        rest = rest * (1 - p[:, i])
    out[:, k] = rest
    if chain == "chain-full":
        for i in range(k):
            later = np.prod(1 - p[:, i + 1:], axis=1) if i + 1 < k else np.ones(n)
            out[:, i] *= later
        out /= out.sum(1, keepdims=True).clip(min=1e-12)
    return out


class Recogniser:
    """One binary recogniser: 'is this input of task m?' from subnetwork m's relevance features."""

    def __init__(self, task, config, seed=0):
        self.task = task
        self.config = config
        self.seed = seed
        self.columns = None
        self.forest = None
        self.flat = None         # the forest in flat arrays, made on the first small prediction
        self.importances = None

    def fit(self, own, others, columns):
        """own / others: (n, d) feature arrays of task m's samples and later tasks' samples;
        ``columns``: the input columns the forest uses (see :func:`select_columns`)."""
        self.columns = columns
        x = np.concatenate([own, others])[:, self.columns]
        y = np.concatenate([np.ones(len(own)), np.zeros(len(others))])
        self.forest = RandomForestClassifier(
            n_estimators=self.config.trees, max_depth=self.config.max_depth,
            min_samples_leaf=self.config.min_samples_leaf, criterion="log_loss", max_features="log2",
            bootstrap=False, random_state=self.seed + self.task, n_jobs=-1)
        self.forest.fit(x, y)
        return self

    def probability(self, features):
        """P(input belongs to task m) for every row of ``features``."""
        if 1.0 not in self.forest.classes_:
            return np.zeros(len(features))
        x = features[:, self.columns]
        if len(x) < 256 and not np.isnan(x).any():
            # a handful of rows (one image on the Explore page): all trees at once, same numbers
            if self.flat is None:
                self.flat = FlatForest(self.forest, list(self.forest.classes_).index(1.0))
            return self.flat.probability(x)
        return self.forest.predict_proba(x)[:, list(self.forest.classes_).index(1.0)]

    def top_features(self, features_row, n=8):
        """The (column, importance, value) of the n most important features for one input."""
        if self.importances is None:   # sklearn recomputes them from every tree on each access
            self.importances = self.forest.feature_importances_
        order = np.argsort(-self.importances)[:n]
        return [(int(self.columns[i]), float(self.importances[i]), float(features_row[self.columns[i]]))
                for i in order]


def select_columns(own, k):
    """The ``k`` columns (sorted) with the highest mean over a recogniser's own samples; every
    column when ``k`` is 0 or not smaller than the width."""
    if k and k < own.shape[1]:
        return np.sort(np.argsort(-own.mean(0), kind="stable")[:k])
    return np.arange(own.shape[1])


def feature_matrix(features, logits, with_logits):
    """Recogniser inputs: relevance vectors, optionally followed by the subnetwork's logits."""
    array = features.float().numpy()
    return np.concatenate([array, logits.float().numpy()], axis=1) if with_logits else array

