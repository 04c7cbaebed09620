"""One input through several subnetworks at once, with LRP: the pass task recognition and the
Explore page are built on.

The inputs are stacked once per subnetwork, each copy gets its subnetwork's masks (per-row masks),
and one forward + one LRP backward give every subnetwork's relevance vectors, logits and heatmaps.
"""
from typing import NamedTuple

import torch

from .relevance import lrp_context, normalise, relevance_batch
from .tasks import head_slices


class SubnetworkPass(NamedTuple):
    """Per subnetwork (list index = position in ``tasks``) results of :func:`subnetwork_pass`."""
    features: list       # (N, units) normalised relevance, all unit layers concatenated
    predictions: list    # (N,) within-task class the subnetwork predicts
    logits: list         # (N, classes of that task) head outputs
    heatmaps: list       # (N, C, H, W) input relevance, or None unless want_input


def subnetwork_pass(model, task_masks, tasks, x, batch_size=512, device=None, want_input=False):
    """Every input of ``x`` through the subnetwork of each task in ``tasks`` (TaskSpecs) in one
    batched LRP pass per chunk; relevance starts from each copy's own within-task prediction.

    task_masks: per unit layer a (len(tasks), units) mask tensor, or None for the whole network.
    """
    device = device or next(model.parameters()).device
    n_sub = len(tasks)
    chunk = max(1, batch_size // n_sub)
    parts = {name: [[] for _ in tasks] for name in SubnetworkPass._fields}
    allowed = head_slices(tasks, model.n_classes, device)
    with lrp_context(model) as modified:
        for begin in range(0, len(x), chunk):
            xb = x[begin:begin + chunk].to(device)
            n = len(xb)
            row_allowed = allowed.repeat_interleave(n, dim=0)

            def own_prediction(logits):
                # each row's target: the best class inside its own subnetwork's head slice
                return logits.masked_fill(~row_allowed, -torch.inf).argmax(1)

            masks = (None if task_masks is None
                     else [m.to(device).repeat_interleave(n, dim=0) for m in task_masks])
            with model.subnetwork(masks):
                result = relevance_batch(modified, model, xb.repeat(n_sub, *[1] * (xb.dim() - 1)),
                                         own_prediction, want_input=want_input)
            _collect(parts, result, tasks, n, want_input)
    return SubnetworkPass(**{name: ([torch.cat(p) for p in lists] if (name != "heatmaps" or want_input)
                                    else None)
                             for name, lists in parts.items()})


def _collect(parts, result, tasks, n, want_input):
    """Split one stacked LRP pass back into its subnetworks' rows."""
    vector = torch.cat(normalise(result.units), dim=1).detach().cpu()
    for i, task in enumerate(tasks):
        rows = slice(i * n, (i + 1) * n)
        sub_logits = result.logits[rows, task.rows].cpu()
        parts["features"][i].append(vector[rows])
        parts["logits"][i].append(sub_logits)
        parts["predictions"][i].append(sub_logits.argmax(1))
        if want_input:
            parts["heatmaps"][i].append(result.input[rows].detach().cpu())
