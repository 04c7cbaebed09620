"""Recognising an input's task from the relevance pattern it produces in every subnetwork.

After task t, every subnetwork m <= t sees task t's reference (and validation-slice) images; the
per-unit relevance vector each produces, conditioned on the subnetwork's *own* prediction, is stored
(the images are not). Recogniser m is a binary random forest telling "task m's own samples through
m" from "samples of later tasks through m". At test time the recognisers are combined as a chain:
P(T=0) = p0, P(T=i) = p_i * prod_{j<i}(1 - p_j), and the last task takes the rest.

All subnetworks run in one batched pass: the inputs are stacked once per subnetwork, each row gets
its subnetwork's mask, and one forward + one LRP backward give every relevance vector at once.
"""
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier

from .errors import UserError
from .relevance import lrp_context, normalise, relevance_batch

CHAINS = ("chain", "chain-full")


@dataclass
class RecognitionConfig:
    """How recognisers are built (research defaults).

    Parameters
    ----------
    top_k: features per recogniser: the units with highest mean relevance on the recogniser's own
        task (0 = every unit).
    trees, max_depth, min_samples_leaf: random-forest settings (criterion log_loss, max_features
        log2, no bootstrap, as in the research code).
    chain: ``chain`` (P(T=i) = p_i prod_{j<i}(1-p_j)) or ``chain-full`` (the paper figure's variant:
        every task's score also multiplies in the complements of the later recognisers).
    with_logits: add the subnetwork's own logits to its relevance features (ours; off = faithful).
    val_per_class: validation images per class added to the reference set for recognition.
    """
    top_k: int = 40
    trees: int = 300
    max_depth: int = 40
    min_samples_leaf: int = 5
    chain: str = "chain"
    with_logits: bool = False
    val_per_class: int = 100


def subnetwork_features(model, ownership, heads, x, tasks, batch_size=512, device=None):
    """Relevance vectors of ``x`` through each subnetwork in ``tasks``, in one batched pass per chunk.

    Returns (features, predictions, logits): features[i] is an (N, units) float tensor (all unit
    layers concatenated, each normalised per sample), predictions[i] the within-task class that
    subnetwork tasks[i] predicts, logits[i] (N, n_classes of that task) its head outputs.
    """
    device = device or next(model.parameters()).device
    n_sub = len(tasks)
    chunk = max(1, batch_size // n_sub)
    feats, preds, logit_parts = [[] for _ in tasks], [[] for _ in tasks], [[] for _ in tasks]
    # allowed[i, c]: output row c belongs to subnetwork tasks[i]'s head slice
    allowed = torch.zeros(n_sub, model.n_classes, dtype=torch.bool, device=device)
    for i, t in enumerate(tasks):
        allowed[i, heads[t][0]:heads[t][0] + heads[t][1]] = True
    with lrp_context(model) as modified:
        for begin in range(0, len(x), chunk):
            xb = x[begin:begin + chunk].to(device)
            n = len(xb)
            model.set_masks(ownership.stacked_masks(tasks, n, device))
            row_allowed = allowed.repeat_interleave(n, dim=0)

            def own_prediction(logits):
                # each row's target: the best class inside its own subnetwork's head slice
                return logits.masked_fill(~row_allowed, -torch.inf).argmax(1)

            units, _, logits = relevance_batch(modified, model, xb.repeat(n_sub, *[1] * (xb.dim() - 1)),
                                               own_prediction)
            vector = torch.cat(normalise(units), dim=1).detach()
            for i, t in enumerate(tasks):
                rows = slice(i * n, (i + 1) * n)
                feats[i].append(vector[rows].cpu())
                sub_logits = logits[rows, heads[t][0]:heads[t][0] + heads[t][1]].cpu()
                logit_parts[i].append(sub_logits)
                preds[i].append(sub_logits.argmax(1))
    model.set_masks(None)
    cat = lambda parts: [torch.cat(p) for p in parts]
    return cat(feats), cat(preds), cat(logit_parts)


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

    def fit(self, own, others):
        """own / others: (n, d) feature arrays of task m's samples and later tasks' samples."""
        k = self.config.top_k
        mean = own.mean(0)
        self.columns = np.sort(np.argsort(-mean, kind="stable")[:k]) if k and k < own.shape[1] else np.arange(own.shape[1])
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
        proba = self.forest.predict_proba(features[:, self.columns])
        return proba[:, list(self.forest.classes_).index(1.0)] if 1.0 in self.forest.classes_ else np.zeros(len(features))

    def stored_bytes(self):
        """Bytes of the forest's node arrays (what any format must keep of it)."""
        return sum(tree.tree_.children_left.nbytes * 2 + tree.tree_.feature.nbytes + tree.tree_.threshold.nbytes
                   + tree.tree_.value.nbytes for tree in self.forest.estimators_) + self.columns.nbytes

    def top_features(self, features_row, n=8):
        """The (column, importance, value) of the n most important features for one input."""
        order = np.argsort(-self.forest.feature_importances_)[:n]
        return [(int(self.columns[i]), float(self.forest.feature_importances_[i]), float(features_row[self.columns[i]]))
                for i in order]


def feature_matrix(features, logits, with_logits):
    """Recogniser inputs: relevance vectors, optionally followed by the subnetwork's logits."""
    array = features.float().numpy()
    return np.concatenate([array, logits.float().numpy()], axis=1) if with_logits else array
