"""Layer-wise Relevance Propagation with zennit: per-unit relevance and input heatmaps, in batches.

The composite is zennit's ``EpsilonPlusFlat`` (Flat on the first layer, z+ on convolutions, epsilon
on dense layers), with the canonizers the architecture needs, run as :mod:`~rerelrp_core.lrp_rules`
runs it (the same relevance with less work). While a composite is active, the
gradient that reaches a tensor *is* that tensor's relevance, so the relevance of a layer's units is
the gradient at the layer's UnitMask output, summed over spatial positions. One backward pass per
batch gives every layer at once (and the input heatmap).
"""
from contextlib import contextmanager
from typing import NamedTuple

import torch

from .lrp_rules import composite_for, operations_for
from .models import evaluating, mask_rows
from .seeding import exact_float32


@contextmanager
def recording(model):
    """Within the block, every UnitMask appends its output to the yielded list on each forward."""
    records = []
    for layer in model.unit_layers:
        layer.mask.recorded = records
    try:
        yield records
    finally:
        for layer in model.unit_layers:
            layer.mask.recorded = None


@contextmanager
def lrp_context(model):
    """The model with the LRP composite's hooks attached (removed again on exit)."""
    with evaluating(model), exact_float32(), composite_for(model).context(model) as modified, \
            operations_for(model):
        yield modified


def normalise(per_layer):
    """Divide each sample's relevance in each layer by its sum of absolute values (0 stays 0)."""
    return [r / r.abs().sum(dim=1, keepdim=True).clamp_min(1e-12) for r in per_layer]


class LRPPass(NamedTuple):
    """What one LRP pass over a batch gives."""
    units: list          # per layer, raw unit relevance (N, units)
    input: object        # input heatmap (N, C, H, W), or None when not asked for
    logits: object       # (N, outputs), detached


def relevance_batch(modified, model, x, target_rows, want_input=False):
    """One LRP pass over batch ``x`` through the hooked model ``modified``, started from output row
    ``target_rows[i]`` for sample i (its relevance is that logit's value); ``target_rows`` may also
    be a function of the logits that returns the rows."""
    x = x.detach().requires_grad_(want_input)
    with recording(model) as records:
        logits = modified(x)
        if callable(target_rows):
            target_rows = target_rows(logits.detach())
        # Start from the target logit's own value (LRP's convention: the output relevance is the
        # explained score itself), so that each rule's conservation can be checked.
        start = torch.zeros_like(logits)
        picked = torch.arange(len(x), device=logits.device)
        start[picked, target_rows] = logits.detach()[picked, target_rows]
        wrt = records + ([x] if want_input else [])
        grads = torch.autograd.grad(logits, wrt, grad_outputs=start)
    return LRPPass([per_unit(g) for g in grads[:len(records)]], grads[-1] if want_input else None,
                   logits.detach())


def per_unit(tensor):
    """(N, units, ...) -> (N, units), summing conv maps over their spatial positions."""
    return tensor.sum(dim=tuple(range(2, tensor.dim()))) if tensor.dim() > 2 else tensor


def unit_relevance(model, x, target_rows, masks=None, batch_size=256, device=None):
    """Normalised per-unit relevance of every sample in ``x``, one (N, units) tensor per layer.

    Parameters
    ----------
    target_rows: output row (global class index) each sample's relevance starts from.
    masks: subnetwork masks for ContinualNet.subnetwork (per layer (units,) or (N, units)); None
        uses all units.
    batch_size: samples per LRP pass.
    """
    device = device or next(model.parameters()).device
    out = [[] for _ in model.unit_layers]
    with lrp_context(model) as modified:
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            with model.subnetwork(mask_rows(masks, start, stop, device)):
                units = relevance_batch(modified, model, x[start:stop].to(device),
                                        target_rows[start:stop].to(device)).units
            for i, r in enumerate(normalise(units)):
                out[i].append(r.detach())
    return [torch.cat(parts) for parts in out]


def input_heatmap(model, x, target_rows, masks=None, device=None):
    """LRP relevance of every input pixel (N, C, H, W) for output rows ``target_rows``."""
    device = device or next(model.parameters()).device
    with lrp_context(model) as modified, model.subnetwork(mask_rows(masks, 0, len(x), device)):
        heat = relevance_batch(modified, model, x.to(device), target_rows.to(device), want_input=True).input
    return heat.detach()

