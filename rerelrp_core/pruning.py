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
    capped: int = 0       # units the claim cap pruned beyond what acc_drop allowed


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


def cap_claims(keep, scores, free, fraction):
    """Keep masks where the task freezes at most ``floor(fraction * free units)`` of each layer's free
    units (``fraction`` None: all of them but one): the least relevant of its new units beyond that
    are pruned. Units it reuses (frozen by an earlier task) cost no capacity and stay. With
    ``fraction`` < 1 a layer never runs out of free units, so every later task can still learn
    something of its own. A layer left empty keeps its most relevant frozen unit (a subnetwork needs
    one unit per layer)."""
    capped = []
    for k, s, f in zip(keep, scores, free):
        k = k.clone()
        claimed = torch.nonzero(k & f).flatten()
        limit = int(f.sum()) - 1 if fraction is None else int(fraction * int(f.sum()))
        if len(claimed) > limit:
            by_relevance = claimed[torch.argsort(s.float().cpu()[claimed], descending=True, stable=True)]
            k[by_relevance[limit:]] = False
        if not k.any() and (~f).any():
            reused = torch.nonzero(~f).flatten()
            k[reused[torch.argmax(s.float().cpu()[reused])]] = True
        capped.append(k)
    return capped


def level_for(curve, acc_drop):
    """Index of the level of a pruning curve (see ReReLRP.pruning_curve) that the acc_drop rule picks:
    the one that prunes most while its accuracy stays within ``acc_drop`` points of the reference
    (the first level, nothing pruned, when none does)."""
    floor = curve["reference"] - acc_drop
    passing = [i for i, accuracy in enumerate(curve["accuracy"]) if accuracy >= floor]
    return passing[-1] if passing else 0


def search_pruning(scores, evaluate, reference_accuracy, acc_drop=1.0, max_keep_fraction=None,
                   free=None, max_claim_fraction=1.0, cap_tolerance=0.0):
    """Find the largest set of low-relevance units to prune.

    Parameters
    ----------
    scores: per layer, a (units,) tensor of relevance (higher = more important).
    evaluate: callable(keep masks, at_least) -> validation accuracy in percent of that subnetwork;
        with ``at_least`` (not None) it may stop early and return any value below ``at_least`` once
        the accuracy cannot reach it (the bisection only needs to know that the level fails).
    reference_accuracy: validation accuracy of the unpruned network, percent.
    acc_drop: allowed drop in accuracy points.
    max_keep_fraction: optional cap on the fraction of all units the task may keep (a remedy for
        capacity saturation); the cap is applied even if accuracy then drops further.
    free: per layer, bool tensor of the units no earlier task froze (None: all free).
    max_claim_fraction: the largest share of each layer's free units the task may freeze (see
        :func:`cap_claims`); applied after the search. Where it takes accuracy more than
        ``cap_tolerance`` points below the acc_drop floor, the least cap that leaves every layer one
        free unit is applied instead (even if accuracy then drops further: a later task must find a
        free unit in every layer).
    """
    sizes = [len(s) for s in scores]
    order = prune_order(scores)
    floor = reference_accuracy - acc_drop
    lo, hi, passes = 0, len(order) + 1, 0
    lo_accuracy = reference_accuracy
    if max_keep_fraction is not None:
        lo = min(len(order), max(0, sum(sizes) - int(max_keep_fraction * sum(sizes))))
        lo_accuracy = evaluate(keep_masks(sizes, order, lo), None)
        passes += 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        accuracy = evaluate(keep_masks(sizes, order, mid), floor)
        passes += 1
        if accuracy >= floor:
            lo, lo_accuracy = mid, accuracy
        else:
            hi = mid
    keep = keep_masks(sizes, order, lo)
    if max_claim_fraction < 1:
        free = free or [torch.ones(n, dtype=torch.bool) for n in sizes]
        # the cap, and where it would break the acc_drop rule the search kept, the least cap that
        # still leaves every layer a free unit (an adapted MobileNetV3's squeeze-excitation units,
        # which LRP gives no relevance, fell to the 0.75 cap and its first task from 100 % to 50 %)
        for fraction in (max_claim_fraction, None):
            capped = cap_claims(keep, scores, free, fraction)
            if all((c == k).all() for c, k in zip(capped, keep)):
                break
            n_pruned = sum(sizes) - int(sum(c.sum() for c in capped))
            accuracy = evaluate(capped, floor - cap_tolerance if fraction is not None else None)
            passes += 1
            if accuracy >= floor - cap_tolerance or fraction is None:
                return PruneResult(capped, n_pruned, accuracy, reference_accuracy, passes,
                                   capped=n_pruned - lo)
    return PruneResult(keep, lo, lo_accuracy, reference_accuracy, passes)
