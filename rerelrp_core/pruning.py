"""Relevance-ranked pruning under the ``acc_drop`` rule.

All units of all layers are ranked together by relevance (a global threshold, no per-layer quota).
We look for the largest number k of lowest-relevance units whose removal keeps validation accuracy
within ``acc_drop`` points of the unpruned accuracy. Accuracy is close to monotone in k, so a
bisection finds k in ceil(log2(candidates + 1)) validation passes instead of one pass per
histogram bin; the returned k is always one that was actually evaluated and passed.
"""
from dataclasses import dataclass

import torch


@dataclass
class PruneResult:
    keep: list            # per layer, bool tensor: units the task keeps
    n_pruned: int
    accuracy: float       # validation accuracy of the pruned subnetwork, percent
    reference_accuracy: float
    passes: int           # validation passes spent by the search


def prune_order(scores, min_keep_per_layer=1):
    """Candidates for pruning, lowest relevance first, as (layer, unit) pairs. The
    ``min_keep_per_layer`` most relevant units of each layer are never candidates."""
    candidates = []
    for layer, s in enumerate(scores):
        order = torch.argsort(s.float().cpu(), stable=True)
        protected = min(min_keep_per_layer, len(order))
        for unit in order[:len(order) - protected].tolist():
            candidates.append((float(s[unit]), layer, unit))
    candidates.sort(key=lambda c: c[0])
    return [(layer, unit) for _, layer, unit in candidates]


def keep_masks(layer_sizes, order, k):
    """Keep masks with the first ``k`` candidates of ``order`` pruned."""
    keep = [torch.ones(n, dtype=torch.bool) for n in layer_sizes]
    for layer, unit in order[:k]:
        keep[layer][unit] = False
    return keep


def search_pruning(scores, evaluate, reference_accuracy, acc_drop=1.0, max_keep_fraction=None):
    """Find the largest set of low-relevance units to prune.

    Parameters
    ----------
    scores: per layer, a (units,) tensor of relevance (higher = more important).
    evaluate: callable(keep masks) -> validation accuracy in percent of that subnetwork.
    reference_accuracy: validation accuracy of the unpruned network, percent.
    acc_drop: allowed drop in accuracy points.
    max_keep_fraction: optional cap on the fraction of all units the task may keep (a remedy for
        capacity saturation); the cap is applied even if accuracy then drops further.
    """
    sizes = [len(s) for s in scores]
    order = prune_order(scores)
    floor = reference_accuracy - acc_drop
    lo, hi, passes = 0, len(order) + 1, 0
    lo_accuracy = reference_accuracy
    if max_keep_fraction is not None:
        lo = min(len(order), max(0, sum(sizes) - int(max_keep_fraction * sum(sizes))))
        lo_accuracy = evaluate(keep_masks(sizes, order, lo))
        passes += 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        accuracy = evaluate(keep_masks(sizes, order, mid))
        passes += 1
        if accuracy >= floor:
            lo, lo_accuracy = mid, accuracy
        else:
            hi = mid
    return PruneResult(keep_masks(sizes, order, lo), lo, lo_accuracy, reference_accuracy, passes)
