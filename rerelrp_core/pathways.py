"""Pathways: how the relevance of one decision runs through a task's subnetwork, unit by unit.

Conditional relevance in the spirit of Concept Relevance Propagation, with plain zennit and one
batched backward pass. Inside the LRP context the gradient arriving at a UnitMask's output *is* that
layer's relevance, and zennit's rules are linear in the relevance they pass down. So the input is
stacked once per row we want, and a tensor hook on every recorded UnitMask output rewrites the
relevance of some rows on its way down:

* row 0 explains the explained logit (every unit's relevance, the input heatmap);
* optional *class rows* start from the task's other classes;
* a *through row* of layer l starts from nothing at the output; when the backward pass reaches
  layer l its hook injects row 0's relevance at layer l. What it carries below l is the relevance
  that passed through layer l at all (all of it when every path runs through l: a *cut*);
* a *unit row* of layer l does the same with one unit of layer l only: below l it carries what
  flowed through that unit alone, i.e. its conditional heatmap and, at layer l - 1, the flows into
  every lower unit. Starting these rows from nothing (instead of gating a full pass) keeps
  relevance on skip connections around l out of them, so the definition holds for ResNet-18 too.

The units that get rows are chosen inside the same pass: when layer l's hook runs, row 0's relevance
at layer l is final (nothing above it is gated), so the most relevant units are picked right there.

Completeness (tested): the conditional heatmaps of all units of a layer add up to its through
heatmap, which is the heatmap itself for a cut (every unit layer of the CNNs and VGG-11; in
ResNet-18 only the stem, the rest of the relevance runs around blocks on skip connections); the
flows from all units of layer l into a unit of layer l - 1 add up to that unit's relevance likewise.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .errors import UserError
from .relevance import lrp_context, per_unit, recording, relevance_batch

INPUT = -1       # Edge.lower of an edge into the input image (its lower_unit is 0)
NOT_GATED = -1   # _Plan.layer of a row whose relevance is never rewritten (row 0, class rows)

# Conservation limits. LRP starts from the explained logit z; the head's epsilon rule passes exactly
# z - b into the network (b: the head's bias for that row), and below that every rule conserves
# relevance neuron by neuron up to what biases absorb. Only cuts and the input are judged: a non-cut
# layer's total is not a conserved quantity (ResNet-18's sum rule splits relevance between a block
# and its skip path in any proportion).
# * Growth: |total| > GROWTH_LIMIT * max(|z|, |z - b|) means relevance was created, e.g. duplicated
#   at residual sums without the ResNet canonizer.
# * Sign: total * sign(z - b) < -FLIP_LIMIT * max(|z|, |z - b|, C) means a rule flipped signs. C, the
#   sum of |a_i w_i| over the head's inputs, is how much relevance the head hands down before
#   contributions cancel: when z is a small difference of large contributions (z = 0.03 from +0.5
#   and -0.47), biases can tip a total's sign and only a reversal large against C is a breakage.
# Measured (torch 2.13, zennit 0.5.1), as |total| / max(|z|, |z - b|) and the signed total / scale:
#   demo run (cnn-small, MNIST-5k, 5 tasks), all 1,000 test images x both classes of their task:
#     growth at most 1.455 (a non-predicted class at z = 0.0008), sign at least -0.023 (-0.68
#     without the C term: z = 0.031, b = 0.033);
#   untrained cnn / cnn-small / vgg11 / resnet18 (8x8 and 32x32 inputs), random inputs, any class:
#     growth at most 1.132, sign at least -0.012;
#   resnet18 without its canonizer (a real breakage; 40 inputs at 8x8, 12 at 32x32): growth 48.8 to
#     256 (it doubles at every residual block).
# GROWTH_LIMIT sits between the two (x2.7 above normal, x12 below broken). Shrinking is never
# flagged: z+ loses what positive biases take, which can be almost everything.
GROWTH_LIMIT = 4.0
FLIP_LIMIT = 0.5
# The Flat rule on the first layer is exactly conservative (measured: at most 3e-6 of the logit with
# canonizers, 5e-5 without): a larger gap between the input and the first unit layer means the
# first layer did not get the Flat rule.
FLAT_TOLERANCE = 1e-3


class Edge(NamedTuple):
    """Relevance that an upper node hands down to a lower node of the pathway graph."""
    lower: int         # unit layer index of the lower node; INPUT for the input image
    lower_unit: int    # unit index in that layer (0 for the input image)
    upper: int         # unit layer index of the upper node; len(layers) for an output class
    upper_unit: int    # unit index in that layer, or the global output row of a class
    relevance: float   # relevance reaching the lower node when the pass starts from the upper one alone


@dataclass
class PathwayLayer:
    """One unit layer of a pathway. Relevance is raw (summed over positions, not normalised)."""
    name: str
    relevance: np.ndarray   # (units,) relevance of every unit for the explained logit
    owner: np.ndarray       # (units,) task that froze each unit; -1 free (every unit without masks)
    kept: np.ndarray        # (units,) bool: the unit belongs to the explaining subnetwork
    top: np.ndarray         # (k,) the units with rows: the most relevant kept units, strongest first
    heatmaps: np.ndarray    # (k, H, W) input relevance that flows through each top unit alone
    flow: np.ndarray        # (k, units of layer ``below``): relevance reaching every unit of that layer
    #                         from top unit r alone; None when no shown layer is below (see ``heatmaps``)
    through: np.ndarray     # (H, W) input relevance that passes through this layer at all (zeros when
    #                         the layer is not shown)
    cut: bool               # all of the input relevance passes through this layer (through == heatmap)
    shown: bool = True      # the pathway shows this layer (it has rows in the pass)
    below: int = None       # the next shown unit layer towards the input (None: the input)


@dataclass
class LayerHealth:
    """The total relevance of one unit layer or of the input."""
    name: str
    total: float    # sum over all units (or pixels)
    ratio: float    # total / explained logit (nan when the logit is 0)
    judged: bool    # a conserved quantity (a cut, or the input), so the checks apply to it


@dataclass
class Health:
    """LRP conservation for this input: does the explained logit arrive at every cut and the input?"""
    logit: float        # the explained logit: the relevance the backward pass starts from
    bias: float         # the head's bias for that row (the epsilon rule passes on logit - bias)
    scale: float        # max(|logit|, |logit - bias|): what growth is judged against (see GROWTH_LIMIT)
    contributions: float  # sum of |a_i w_i| over the head's inputs (see FLIP_LIMIT)
    layers: list        # LayerHealth per unit layer from the output side down, then "input"
    ok: bool
    warning: str        # "" when ok, else one sentence on what broke


@dataclass
class Pathway:
    """The numbers of a pathway figure: plain numpy arrays and Python numbers, no tensors."""
    task: int                   # the task whose subnetwork explains
    target: int                 # explained global output row
    predicted: int              # global row the subnetwork predicts within the task's rows
    task_rows: np.ndarray       # the task's global output rows
    logits: np.ndarray          # the subnetwork's logits for the task's rows
    heatmap: np.ndarray         # (H, W) input relevance for the target (channels summed)
    layers: list                # PathwayLayer per unit layer, input side first
    class_rows: np.ndarray      # explained classes: the target, then (classes=True) the task's others
    class_flow: np.ndarray      # (classes, units of the last shown layer): its relevance per class alone
    class_heatmaps: np.ndarray  # (classes, H, W) input relevance per class
    edges: list                 # Edge list: the strongest flows, at most top_edges per upper node
    health: Health

    @property
    def unit_heatmaps(self):
        """{(layer index, unit): conditional heatmap (H, W)} of every top unit."""
        return {(i, int(u)): layer.heatmaps[r] for i, layer in enumerate(self.layers)
                for r, u in enumerate(layer.top)}


@dataclass
class _Plan:
    """What each row of the stacked batch does in the backward pass."""
    start: torch.Tensor     # (B,) output row each ungated row starts from (-1: set after the forward)
    layer: torch.Tensor     # (B,) unit layer where a through/unit row gets its relevance, else NOT_GATED
    through: torch.Tensor   # (B,) bool: a through row (all of the layer) rather than a unit row
    units: list             # per unit layer, the units of its unit rows (None: chosen in the pass)
    kept: list              # per unit layer, bool (units,): the explaining subnetwork


# -- explain one image ------------------------------------------------------------------------


def explain_pathway(learner, x, task, target=None, top_units=6, top_edges=4, classes=False, units=None,
                    layers=None):
    """The pathway of one image through task ``task``'s subnetwork, from one batched LRP pass.

    Parameters
    ----------
    learner : Learner
        A trained learner; neither it nor its model is changed (hooks, masks and the training flag
        are restored even when the pass fails). The pass hooks the model while it runs, so threads
        that share a model must each use their own ``learner.replica()``.
    x : torch.Tensor
        One image, shaped (1, C, H, W).
    task : int
        The task whose subnetwork (``learner.task_masks(task)``; the whole network for methods
        without masks) explains the image.
    target : int, optional
        Global output row to explain; None explains the subnetwork's prediction within the task.
    top_units : int
        Units per layer that get a conditional heatmap and flows: the most relevant kept units.
    top_edges : int
        Edges kept per upper node (unit or class) in ``Pathway.edges``: its strongest by |flow|.
    classes : bool
        Also explain the task's other classes (their heatmaps and edges to the last unit layer).
    units : list, optional
        Per unit layer, unit indices to give rows instead of the top units (a None entry keeps the
        automatic choice); e.g. every unit of a layer, to check completeness.
    layers : list of int, optional
        The unit layers the pathway shows (default: all): only they get through rows, top units,
        heatmaps and edges, and edges join each shown layer to the next shown one below it, so a
        deep network's pathway stays as small as the layers asked for. Health is judged on all.

    Returns
    -------
    Pathway
    """
    spec, masks = _check(learner, x, task, target, top_units, top_edges)
    sizes = learner.model.layer_sizes()
    kept = [torch.ones(n, dtype=torch.bool) if masks is None else masks[i].detach().cpu() > 0
            for i, n in enumerate(sizes)]
    shown = _shown_layers(layers, len(sizes))
    plan = _plan(spec, target, kept, top_units, _explicit_units(units, sizes), classes, shown)
    grads, logits, features = _stacked_pass(learner.model, x.to(learner.device), masks, plan, spec)
    return _assemble(learner, spec, plan, grads, (logits, features), top_edges)


def _check(learner, x, task, target, top_units, top_edges):
    """Raise a UserError for a bad request; return the task's spec and subnetwork masks."""
    learner.model.check_input(x)
    if len(x) != 1:
        raise UserError(f"A pathway explains exactly one image, got a batch of {len(x)}.")
    if not _whole(task) or not 0 <= task < len(learner.tasks):
        raise UserError(f"Task {task!r} is not a task this run has seen (0 to {len(learner.tasks) - 1}).")
    seen = learner.seen_classes
    if target is not None and (not _whole(target) or not 0 <= target < seen):
        raise UserError(f"Output row {target!r} is not a class this run has seen (0 to {seen - 1}).")
    for name, value in (("top_units", top_units), ("top_edges", top_edges)):
        if not _whole(value) or value < 1:
            raise UserError(f"{name} must be a whole number of at least 1, not {value!r}.")
    return learner.tasks[task], learner.task_masks(task)


def _whole(value):
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _explicit_units(units, sizes):
    """``units`` as per-layer long tensors (None where the pass chooses), checked against the sizes."""
    if units is None:
        return [None] * len(sizes)
    if len(units) != len(sizes):
        raise UserError(f"units needs one entry per unit layer ({len(sizes)}), got {len(units)}.")
    fixed = []
    for i, (chosen, n) in enumerate(zip(units, sizes)):
        if chosen is not None:
            try:
                chosen = torch.as_tensor(np.asarray(chosen, dtype=np.int64).reshape(-1))
            except (TypeError, ValueError):
                chosen = torch.zeros(0)     # not whole numbers: reported just below
            if not len(chosen) or chosen.min() < 0 or chosen.max() >= n:
                raise UserError(f"The units asked for in layer {i} must be indices from 0 to {n - 1}.")
        fixed.append(chosen)
    return fixed


def _shown_layers(layers, n_layers):
    """The shown unit layers as a sorted list of indices (all for None), checked."""
    if layers is None:
        return list(range(n_layers))
    shown = sorted({int(i) for i in layers if _whole(i) and 0 <= i < n_layers})
    if not shown or len(shown) != len(set(layers)):
        raise UserError(f"The layers to show must be unit layer indices from 0 to {n_layers - 1}; "
                        f"got {layers!r}.")
    return shown


def _plan(spec, target, kept, top_units, fixed, classes, shown):
    """Rows: 0 = the target, then the other classes (if asked), one through row per shown layer,
    then every shown layer's unit rows. Start rows still unknown (the prediction) are -1 until the
    forward."""
    n_classes = 1
    if classes:
        # a target outside the task's rows leaves all of the task's classes to explain
        n_classes += spec.n_classes - (target is None or spec.has_row(target))
    counts = [0 if i not in shown else len(f) if f is not None else min(top_units, int(k.sum()))
              for i, (f, k) in enumerate(zip(fixed, kept))]
    layer = ([NOT_GATED] * n_classes + list(shown)
             + [i for i, n in enumerate(counts) for _ in range(n)])
    through = [False] * n_classes + [True] * len(shown) + [False] * sum(counts)
    start = [-1 if target is None else target] + [-1] * (len(layer) - 1)
    return _Plan(torch.tensor(start), torch.tensor(layer), torch.tensor(through), list(fixed), kept)


def _start_rows(plan, spec, logits):
    """Fill in row 0's start (the prediction within the task, when not given) and the class rows'."""
    if plan.start[0] < 0:
        plan.start[0] = spec.offset + int(logits[0, spec.rows].argmax())
    n_others = int((plan.layer == NOT_GATED).sum()) - 1
    others = [r for r in range(spec.offset, spec.offset + spec.n_classes) if r != int(plan.start[0])]
    plan.start[1:1 + n_others] = torch.tensor(others[:n_others], dtype=torch.int64)


def _stacked_pass(model, x, masks, plan, spec):
    """One forward and one LRP backward of ``x`` stacked once per plan row.

    Returns the relevance arriving at every unit layer's output and at the input, per row
    (detached, on the CPU), and row 0's logits and head input (features). Every context manager
    undoes its own change to the model (LRP hooks, training flag, masks, recording) and the tensor
    hooks are removed here, whatever happens in between.
    """
    handles = []
    with lrp_context(model) as modified, model.subnetwork(masks), recording(model) as records:
        try:
            stacked = x.detach().repeat(len(plan.start), *[1] * (x.dim() - 1)).requires_grad_(True)
            # ContinualNet.forward, in its two steps: the health check needs the head's input
            features = modified.backbone(stacked)
            logits = modified.head(features)
            _start_rows(plan, spec, logits.detach())
            for i, record in enumerate(records):
                if bool((plan.layer == i).any()):       # a layer not shown has no rows to rewrite
                    handles.append(record.register_hook(_gate_hook(plan, i)))
            seed = torch.zeros_like(logits)
            rows = torch.nonzero(plan.layer == NOT_GATED).flatten()
            picked = (rows.to(seed.device), plan.start[rows].to(seed.device))
            # LRP starts from the logit's own value; through and unit rows start from nothing
            seed[picked] = logits.detach()[picked]
            grads = torch.autograd.grad(logits, records + [stacked], grad_outputs=seed)
        finally:
            for handle in handles:
                handle.remove()
    return [g.detach().cpu() for g in grads], logits.detach()[0].cpu(), features.detach()[0].cpu()


def _gate_hook(plan, layer):
    """The tensor hook of unit layer ``layer`` (a closure, so that it knows its layer)."""
    def rewrite(grad):
        return _rewrite(grad, plan, layer)
    return rewrite


def _rewrite(grad, plan, layer):
    """The relevance arriving at unit layer ``layer``, with row 0's relevance here injected into
    this layer's through row and, restricted to one unit each, into its unit rows."""
    at = plan.layer == layer
    through = torch.nonzero(at & plan.through).flatten().to(grad.device)
    rows = torch.nonzero(at & ~plan.through).flatten()
    out = grad.clone()
    out[through] = grad[0]
    if len(rows):
        if plan.units[layer] is None:
            plan.units[layer] = _most_relevant(grad[0].detach(), plan.kept[layer], len(rows))
        rows, units = rows.to(grad.device), plan.units[layer].to(grad.device)
        out[rows] = 0
        out[rows, units] = grad[0, units]
    return out


def _most_relevant(relevance, kept, k):
    """The ``k`` kept units with the largest |relevance| (one sample's (units, ...) relevance)."""
    score = per_unit(relevance.unsqueeze(0))[0].abs().cpu()
    score[~kept] = -1.0     # below any |relevance|: a pruned unit is never chosen
    return torch.argsort(score, descending=True, stable=True)[:k]


# -- the plain-data result --------------------------------------------------------------------


def _assemble(learner, spec, plan, grads, outputs, top_edges):
    """Cut the stacked pass into the Pathway's plain arrays; ``outputs``: row 0's logits and features."""
    logits, features = outputs
    units = [per_unit(g) for g in grads[:-1]]
    heat = grads[-1].sum(1)                 # (rows, H, W): channels summed
    shown = sorted(set(plan.layer[plan.through].tolist()))
    below = dict(zip(shown, [None] + shown[:-1]))
    layers = [_layer(i, layer.name, owner, plan, units, heat, below.get(i, False))
              for i, (layer, owner) in enumerate(zip(learner.model.unit_layers, learner.unit_owners()))]
    explained = torch.nonzero(plan.layer == NOT_GATED).flatten()
    class_rows, class_flow = plan.start[explained].numpy(), units[shown[-1]][explained].numpy()
    target = int(plan.start[0])
    health = _health(learner.model.head, layers, float(grads[-1][0].sum()), float(logits[target]), features,
                     target)
    return Pathway(task=spec.index, target=target, predicted=spec.offset + int(logits[spec.rows].argmax()),
                   task_rows=np.arange(spec.offset, spec.offset + spec.n_classes),
                   logits=logits[spec.rows].numpy(), heatmap=heat[0].numpy(), layers=layers,
                   class_rows=class_rows, class_flow=class_flow, class_heatmaps=heat[explained].numpy(),
                   edges=_edges(layers, class_rows, class_flow, top_edges), health=health)


def _health(head, layers, input_total, logit, features, target):
    """The conservation check of row 0, with the head's bias and the size of its contributions."""
    weight = head.weight.detach()[target].cpu()
    bias = 0.0 if head.bias is None else float(head.bias.detach()[target])
    # |a_i w_i| summed: how much relevance the head hands down before positive and negative
    # contributions cancel (the epsilon rule gives head input i exactly a_i w_i of relevance)
    contributions = float((features * weight).abs().sum())
    return check_health([layer.name for layer in layers], [layer.relevance for layer in layers], input_total,
                        logit, bias, contributions, [layer.cut for layer in layers])


def _layer(i, name, owner, plan, units, heat, below):
    """Layer ``i``'s part of the stacked pass; ``below`` is the next shown layer towards the input
    (None: the input; False: layer ``i`` is not shown)."""
    at = plan.layer == i
    rows = torch.nonzero(at & ~plan.through).flatten()
    top = plan.units[i] if plan.units[i] is not None else torch.zeros(0, dtype=torch.int64)
    if below is False:
        return PathwayLayer(name, units[i][0].numpy(), owner, plan.kept[i].numpy(), top[:0].numpy(),
                            heat[rows].numpy(), None, np.zeros_like(heat[0].numpy()), False, shown=False)
    through = heat[torch.nonzero(at & plan.through).flatten()[0]]
    # a cut passes every bit of the input relevance on (float tolerance of one backward pass)
    cut = bool(torch.allclose(through, heat[0], rtol=1e-4, atol=1e-5 * float(heat[0].abs().max()) + 1e-12))
    flow = None if below is None else units[below][rows].numpy()
    return PathwayLayer(name, units[i][0].numpy(), owner, plan.kept[i].numpy(), top.numpy(),
                        heat[rows].numpy(), flow, through.numpy(), cut, below=below)


def _edges(layers, class_rows, class_flow, top_edges):
    """The graph's edges: input <- each top unit of the first shown layer, top units of each shown
    layer <- top units of the next shown layer up, top units of the last shown layer <- classes
    (the ``top_edges`` strongest per upper node)."""
    shown = [i for i, layer in enumerate(layers) if layer.shown]
    first = layers[shown[0]]
    edges = [Edge(INPUT, 0, shown[0], int(u), float(first.heatmaps[r].sum()))
             for r, u in enumerate(first.top)]
    for i in shown[1:]:
        below = layers[i].below
        lower = layers[below].top
        for r, unit in enumerate(layers[i].top):
            edges += _strongest(layers[i].flow[r, lower], lower, below, (i, int(unit)), top_edges)
    last = layers[shown[-1]].top
    for flow, row in zip(class_flow, class_rows):
        edges += _strongest(flow[last], last, shown[-1], (len(layers), int(row)), top_edges)
    return edges


def _strongest(flows, lower_units, lower, upper, k):
    """Edges into ``upper`` ((layer, unit)) from its ``k`` strongest non-zero flows."""
    order = [o for o in np.argsort(-np.abs(flows), kind="stable")[:k] if flows[o] != 0]
    return [Edge(lower, int(lower_units[o]), upper[0], upper[1], float(flows[o])) for o in order]


# -- conservation -----------------------------------------------------------------------------


def check_health(names, relevance, input_total, logit, bias=0.0, contributions=0.0, cuts=None):
    """LRP conservation of one explanation, judged with the limits above.

    Parameters
    ----------
    names : list of str
        Unit layer names, input side first.
    relevance : list of array
        Per unit layer, the relevance of every unit for one sample.
    input_total : float
        Sum of the input heatmap.
    logit : float
        The explained logit (the relevance the backward pass starts from).
    bias : float
        The head's bias for the explained row.
    contributions : float
        The sum of |a_i w_i| over the head's inputs a for the explained row's weights w.
    cuts : list of bool, optional
        Per unit layer, whether all relevance passes through it (default: every layer).

    Returns
    -------
    Health
    """
    cuts = [True] * len(names) if cuts is None else list(cuts)
    entries = [LayerHealth(name, float(np.sum(r)), _ratio(float(np.sum(r)), logit), bool(cut))
               for name, r, cut in zip(names, relevance, cuts)][::-1]
    entries.append(LayerHealth("input", float(input_total), _ratio(float(input_total), logit), True))
    logit, bias, contributions = float(logit), float(bias), float(contributions)
    scale = max(abs(logit), abs(logit - bias), 1e-12)
    warning = _verdict(entries, logit, bias, (scale, max(scale, contributions)))
    return Health(logit, bias, scale, contributions, entries, not warning, warning)


def _ratio(total, logit):
    return total / logit if logit else math.nan


def _verdict(entries, logit, bias, scales):
    """One sentence on the first broken check, or ""; ``entries`` run from the output side down;
    ``scales``: what growth and what sign reversals are judged against."""
    scale, wide = scales
    sign = 1.0 if logit - bias >= 0 else -1.0
    for entry in entries:
        if not math.isfinite(entry.total):
            return f"The relevance of {entry.name} is not finite ({entry.total})."
    for entry in (e for e in entries if e.judged):
        if abs(entry.total) > GROWTH_LIMIT * scale:
            return (f"{entry.name} holds {entry.total:.4g} of relevance, more than {GROWTH_LIMIT:g} times "
                    f"what the explained logit ({logit:.4g}) accounts for: relevance is duplicated (a "
                    f"missing canonizer?).")
        if entry.total * sign < -FLIP_LIMIT * wide:
            return (f"{entry.name} holds {entry.total:.4g} of relevance, the opposite sign of the explained "
                    f"logit ({logit:.4g} minus bias {bias:.4g}): a rule flips signs.")
    first, pixels = entries[-2], entries[-1]
    if first.judged and abs(first.total - pixels.total) > FLAT_TOLERANCE * wide:
        return (f"The input holds {pixels.total:.4g} of relevance but {first.name} {first.total:.4g}; the "
                f"Flat rule conserves it exactly, so the first layer did not get it.")
    return ""


# -- reference images per unit ----------------------------------------------------------------


@dataclass
class UnitReferences:
    """Per unit of every layer, the test images that give it the most relevance (indices only)."""
    names: list       # unit layer names
    images: list      # per layer, int (units, per_unit, 2): (task index, index in that task's x_test)
    #                   of each reference image, highest relevance first; (-1, -1) marks an empty slot
    relevance: list   # per layer, float (units, per_unit): its raw relevance; 0.0 in empty slots


def unit_references(learner, tasks, per_unit=6, batch_size=256):
    """Relevance maximisation: per unit, the test images with the highest relevance for it.

    Every test image of every finished task is explained through its own task's subnetwork at the
    class that subnetwork predicts (task-aware), in batched LRP passes; a unit's relevance is raw
    (summed over positions, not normalised). Only positive relevance counts: slots no image fills
    with positive relevance are marked -1. Images are never kept, only their indices.

    Parameters
    ----------
    learner : Learner
    tasks : list of TaskData
        The run's tasks with their images (``make_tasks``); those the learner has not seen are skipped.
    per_unit : int
        Reference images kept per unit.
    batch_size : int
        Images per LRP pass.

    Returns
    -------
    UnitReferences
    """
    for name, value in (("per_unit", per_unit), ("batch_size", batch_size)):
        if not _whole(value) or value < 1:
            raise UserError(f"{name} must be a whole number of at least 1, not {value!r}.")
    done = [t for t in tasks if t.index < len(learner.tasks)]
    if not done or not sum(len(t.x_test) for t in done):
        raise UserError("This run has no finished task with test images to find reference images in.")
    model = learner.model
    best = [_Best(n, per_unit) for n in model.layer_sizes()]
    first = 0      # a test image's id: its position in the finished tasks' test sets, one after another
    with lrp_context(model) as modified:
        for task in done:
            with model.subnetwork(learner.task_masks(task.index)):
                for start in range(0, len(task.x_test), batch_size):
                    xb = task.x_test[start:start + batch_size].to(learner.device)
                    units = relevance_batch(modified, model, xb, _own_prediction(task)).units
                    for keep, r in zip(best, units):
                        keep.add(r.detach().cpu(), first + start)
            first += len(task.x_test)
    offsets = np.cumsum([0] + [len(t.x_test) for t in done])
    found = [keep.references([t.index for t in done], offsets) for keep in best]
    return UnitReferences([layer.name for layer in model.unit_layers], [images for images, _ in found],
                          [values for _, values in found])


def _own_prediction(spec):
    """The target rows for a batch of ``spec``'s images: its subnetwork's prediction within the task."""
    def rows(logits):
        return spec.offset + logits[:, spec.rows].argmax(1)
    return rows


class _Best:
    """A running per-unit top-k of relevance values and the ids of the images that gave them."""

    def __init__(self, n_units, k):
        # k empty slots to start with: -inf loses against any relevance and is never "filled"
        self.values = torch.full((k, n_units), -math.inf)
        self.ids = torch.zeros((k, n_units), dtype=torch.int64)
        self.k = k

    def add(self, relevance, first_id):
        """Merge a batch's (N, units) relevance; its images have ids first_id, first_id + 1, ..."""
        ids = torch.arange(first_id, first_id + len(relevance)).unsqueeze(1).expand_as(relevance)
        values, ids = torch.cat([self.values, relevance.float()]), torch.cat([self.ids, ids])
        self.values, order = values.topk(self.k, dim=0)
        self.ids = ids.gather(0, order)

    def references(self, task_indices, offsets):
        """(units, k, 2) (task index, test index) and (units, k) relevance; -1 / 0.0 in empty slots."""
        values, ids = self.values.T.numpy(), self.ids.T.numpy()
        filled = values > 0
        # which finished task an id falls in (clipped: empty slots hold id 0 and are masked below)
        position = np.clip(np.searchsorted(offsets, ids, side="right") - 1, 0, len(task_indices) - 1)
        task = np.where(filled, np.asarray(task_indices)[position], -1)
        index = np.where(filled, ids - offsets[position], -1)
        images = np.stack([task, index], axis=-1).astype(np.int64)
        return images, np.where(filled, values, 0.0).astype(np.float32)
