"""What the app shows about one input or one run, computed here so pages only draw.

Everything returns plain numbers (lists, numpy arrays, dicts): pages never touch the model.
"""
import copy

import numpy as np
import torch

from .errors import UserError
from .images import open_image, to_input
from .learners import accuracy, batched_logits
from .relevance import input_heatmap
from .tasks import class_of_row

FREE = -1   # the owner of units no task has frozen


def prepare_upload(run, data, invert="auto"):
    """Bytes of an uploaded image -> the (1, C, H, W) input the model sees."""
    channels, height, _ = run.input_shape
    return to_input(open_image(data), height, channels, invert=invert).unsqueeze(0)


def class_name(run, global_row):
    """Name of output row ``global_row`` (rows follow the task order, not data-set ids)."""
    task, within = class_of_row(run.tasks, global_row)
    return task.class_names[within]


def explain_image(run, x):
    """Prediction, recognised task and per-subnetwork heatmaps and unit relevance for one image,
    all from one batched LRP pass through every subnetwork.

    Returns a dict with ``predicted`` (global row), ``class_name``, ``task`` (recognised),
    ``task_probs`` (None without recognisers), ``recognisers`` (why this task), and ``subnetworks``:
    per task m its within-task ``prediction`` name, ``heatmap`` (H, W), and per-layer
    ``unit_relevance`` and ``unit_activation`` arrays.
    """
    learner = run.learner
    if len(x) != 1:
        raise UserError(f"Explain takes exactly one image, got {len(x)}.")
    if run.tasks_done == 0:
        raise UserError("This run has no finished task to explain yet.")
    if learner.can_recognise():
        result = learner.recognise(x, want_input=True)
        sub, task, probs = result["subnetworks"], int(result["task"][0]), result["task_probs"][0].tolist()
        predicted, why = int(result["predicted"][0]), learner.explain_task(result)
    else:
        sub = learner.subnetworks(x, want_input=True)
        predicted = int(learner.predict_tag(x)[0])
        task, probs, why = class_of_row(run.tasks, predicted)[0].index, None, []
    sizes = learner.model.layer_sizes()

    def per_layer(vector):
        return [part.numpy() for part in torch.split(vector[0], sizes)]

    subnetworks = [{"task": m, "prediction": run.tasks[m].class_names[int(sub.predictions[m][0])],
                    "heatmap": sub.heatmaps[m][0].sum(0).numpy(), "unit_relevance": per_layer(sub.features[m]),
                    "unit_activation": per_layer(sub.activations[m])} for m in range(run.tasks_done)]
    return {"predicted": predicted, "class_name": class_name(run, predicted), "task": task, "task_probs": probs,
            "recognisers": why, "subnetworks": subnetworks}


def unit_owners(run):
    """Per layer: the task that froze each unit (-1 = free); all -1 for methods without masks."""
    learner = run.learner
    if learner.ownership is not None:
        return [o.numpy() for o in learner.ownership.owner()]
    return [np.full(n, -1) for n in learner.model.layer_sizes()]


def relevance_flows(run, relevance, activation, top=60):
    """The strongest relevance flows between consecutive unit layers, at channel level.

    The relevance R_j of an upper unit is split over lower units i in proportion to their positive
    contribution a_i * max(0, w_ji) (the z+ rule applied to channel means; spatial weights summed),
    which is what the plotted edges show. Returns (lower layer, i, upper layer, j, flow) tuples.
    """
    flows = []
    layers = run.model.unit_layers
    for lower in range(len(layers) - 1):
        weight = layers[lower + 1].producers[0].weight.detach().cpu()
        n_in = layers[lower].n_units
        w = weight.reshape(weight.shape[0], weight.shape[1], -1)
        if weight.dim() == 2:   # dense after flatten: group input columns by channel
            if weight.shape[1] % n_in:
                continue
            w = weight.reshape(weight.shape[0], n_in, -1)
        elif weight.shape[1] != n_in:
            continue            # not a direct successor (e.g. residual branches)
        positive = w.clamp(min=0).sum(-1).numpy() * np.maximum(activation[lower], 0)[None, :]
        share = positive / np.clip(positive.sum(1, keepdims=True), 1e-12, None)
        flow = share * relevance[lower + 1][:, None]
        for j, i in zip(*np.unravel_index(np.argsort(-np.abs(flow), axis=None)[:top], flow.shape)):
            if flow[j, i] != 0:
                flows.append((lower, int(i), lower + 1, int(j), float(flow[j, i])))
    return flows


def pathway_share(run, relevance):
    """Per layer, the share of |relevance| that ran through units owned by each task, and free ones.
    Returns {layer name: {task: share, ..., FREE: share}} (FREE = -1, the owner of free units)."""
    out = {}
    for name, owner, r in zip(run.layer_names, unit_owners(run), relevance):
        total = np.abs(r).sum() or 1.0
        shares = {t: float(np.abs(r[owner == t]).sum() / total) for t in range(run.tasks_done)}
        shares[FREE] = float(np.abs(r[owner < 0]).sum() / total)
        out[name] = shares
    return out


def masking_report(run, tasks):
    """Per task: test accuracy of the whole network (no mask) and of the task's own subnetwork."""
    learner = run.learner
    rows = []
    for task in tasks[:run.tasks_done]:
        full = batched_logits(learner.model, task.x_test)[:, task.rows].argmax(1)
        own = learner.predict_taw(task.x_test, task.index)
        rows.append({"task": task.index, "classes": list(task.class_names),
                     "unmasked": accuracy(full, task.y_test), "subnetwork": accuracy(own, task.y_test)})
    return rows


def ablation_report(run, tasks, ablate_task=None, ablate_layer=None):
    """Task-aware test accuracy of every task through its subnetwork, before and after switching
    off the units owned by ``ablate_task`` and/or every unit of layer ``ablate_layer``."""
    learner = run.learner
    owners = unit_owners(run)
    names = run.layer_names
    if ablate_layer is not None and ablate_layer not in names:
        raise UserError(f"Unknown layer '{ablate_layer}'. Layers: {', '.join(names)}.")
    off = [np.zeros(len(o), dtype=bool) for o in owners]
    for i, (name, owner) in enumerate(zip(names, owners)):
        if ablate_task is not None:
            off[i] |= owner == ablate_task
        if name == ablate_layer:
            off[i][:] = True
    rows = []
    for task in tasks[:run.tasks_done]:
        base = learner.task_masks(task.index)
        base = base if base is not None else [torch.ones(len(o)) for o in owners]
        ablated = [b.cpu() * torch.from_numpy(~o).float() for b, o in zip(base, off)]
        predicted = batched_logits(learner.model, task.x_test, ablated)[:, task.rows].argmax(1)
        before = accuracy(learner.predict_taw(task.x_test, task.index), task.y_test)
        rows.append({"task": task.index, "before": before, "after": accuracy(predicted, task.y_test)})
    return rows


def ownership_shares(run):
    """Per layer, the share of units each task owns (froze first) and the free share:
    {layer name: {task: share, ..., FREE: share}}."""
    out = {}
    for name, owner in zip(run.layer_names, unit_owners(run)):
        shares = {t: float(np.mean(owner == t)) for t in range(run.tasks_done)}
        shares[FREE] = float(np.mean(owner < 0))
        out[name] = shares
    return out


def explanation_drift(run, x, task, target_row):
    """The LRP heatmap of one image for output row ``target_row`` as the model stood after each task
    from ``task`` on, through what task-aware prediction of ``task`` uses (its subnetwork for
    ReReLRP, the whole network otherwise). Needs a run trained with keep_snapshots; returns a list
    of (step, heatmap (H, W)) pairs."""
    if not run.snapshots:
        raise UserError("This run kept no per-task weight snapshots (train with keep_snapshots / the app's "
                        "Train page to see explanation drift).")
    model = copy.deepcopy(run.model).cpu()
    masks = run.learner.task_masks(task)
    strip = []
    for step in range(task, run.tasks_done):
        model.load_state_dict({k: v.float() for k, v in run.snapshots[step].items()})
        heat = input_heatmap(model, x, torch.tensor([target_row]), masks=masks, device=torch.device("cpu"))
        strip.append((step, heat.sum(1)[0].numpy()))
    return strip
