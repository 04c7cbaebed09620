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
    ``unit_relevance`` arrays (each layer's relevance normalised by its sum of |values|).
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
                    "heatmap": sub.heatmaps[m][0].sum(0).numpy(),
                    "unit_relevance": per_layer(sub.features[m])}
                   for m in range(run.tasks_done)]
    return {"predicted": predicted, "class_name": class_name(run, predicted), "task": task,
            "task_probs": probs, "recognisers": why, "subnetworks": subnetworks}


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
    owners = run.learner.unit_owners()
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


def ownership_shares(run, by_stage=False):
    """Per layer (or per stage, see :func:`stage_of`), the share of units each task owns (froze
    first) and the free share: {name: {task: share, ..., FREE: share}}."""
    groups = {}
    for name, owner in zip(run.layer_names, run.learner.unit_owners()):
        groups.setdefault(stage_of(name) if by_stage else name, []).append(owner)
    out = {}
    for name, owners in groups.items():
        owner = np.concatenate(owners)
        shares = {t: float(np.mean(owner == t)) for t in range(run.tasks_done)}
        shares[FREE] = float(np.mean(owner < 0))
        out[name] = shares
    return out


def stage_of(layer_name):
    """The stage a unit layer belongs to, from its module path: the path up to its first part that
    is or ends in a number (``features.3.block.1.0`` -> ``features.3``, ``layer2.0.conv1`` ->
    ``layer2``, ``trunk_output.block2.block2-0.f.a.0`` -> ``trunk_output.block2``); a layer
    without one is its own stage."""
    parts = layer_name.split(".")
    for i, part in enumerate(parts):
        if part[-1:].isdigit():
            return ".".join(parts[:i + 1])
    return layer_name


def free_by_stage(run, steps):
    """The capacity history (per step, {layer: free share}) per stage, each stage's free share
    weighted by its layers' units."""
    sizes = dict(zip(run.layer_names, run.model.layer_sizes()))
    out = []
    for step in steps:
        free, total = {}, {}
        for layer, share in step.items():
            stage = stage_of(layer)
            free[stage] = free.get(stage, 0.0) + share * sizes.get(layer, 0)
            total[stage] = total.get(stage, 0) + sizes.get(layer, 0)
        out.append({stage: free[stage] / total[stage] for stage in free if total[stage]})
    return out


def drift_scores(strip):
    """How far each heatmap of an :func:`explanation_drift` strip moved from the first one (right
    after the image's own task): 1 - cosine similarity, 0 = unchanged, 1 = unrelated, 2 = reversed."""
    first = strip[0][1].ravel()
    scores = []
    for _, heat in strip:
        norms = float(np.linalg.norm(first) * np.linalg.norm(heat.ravel()))
        scores.append(1.0 - float(first @ heat.ravel()) / norms if norms else 0.0)
    return scores


def forgetting_of(run, task):
    """Task-aware accuracy points ``task`` has lost after each step since its own (0 at its own)."""
    acc = run.metrics["acc_taw"]
    return [acc[task][task] - acc[step][task] for step in range(task, run.tasks_done)]


def reuse_matrix(run):
    """What later tasks build on: ``matrix[i][j]`` is the share of task j's subnetwork (the units it
    keeps, all layers together) that task i froze. Row j == column j is what task j froze itself;
    the column sums to 1. None for a method without subnetworks."""
    masks = run.learner.ownership
    if masks is None or not masks.n_tasks:
        return None
    owner = np.concatenate(run.learner.unit_owners())
    matrix = np.zeros((masks.n_tasks, masks.n_tasks))
    for j in range(masks.n_tasks):
        kept_owners = owner[torch.cat(masks.task_masks[j]).numpy()]
        matrix[:, j] = np.bincount(kept_owners, minlength=masks.n_tasks)[:masks.n_tasks] / len(kept_owners)
    return matrix


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
