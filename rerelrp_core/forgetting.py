"""From a forgetting number to the images, tasks and units behind it.

Every accuracy-matrix cell is a count of per-image outcomes (:mod:`~rerelrp_core.outcomes`), so the
change of cell (step s, task t) since task t was learnt is exactly the images it *lost* (right after
task t, wrong after step s) minus those it *recovered*. For a method that recognises tasks every
task-agnostic loss is either a recognition mistake (the image went to another task) or a wrong
class within the right task; :func:`recognition_confusion` splits the loss that way. With per-task
weight snapshots, :func:`image_change` shows what moved inside the network for one image.

Everything returns plain numbers, lists and dicts: pages only draw.
"""
import copy

import numpy as np
import torch

from .errors import UserError
from .evaluation import FrozenEvaluation, evaluate_step, evaluator_for
from .outcomes import correct, outcome_accuracy
from .relevance import input_heatmap, unit_relevance
from .tasks import class_of_row

KINDS = {"taw": "task-aware", "tag": "task-agnostic"}


def traced_outcomes(run, tasks):
    """The run's per-image outcomes of every step and a note (None, or one sentence on how they were
    obtained). Runs trained before outcomes were kept get them recomputed where that is exact:
    ReReLRP with class Gaussians from its final state (frozen subnetworks and class statistics
    answer every earlier step as they did then), other methods from their per-task snapshots. The
    recomputed matrices are compared with the recorded ones; a UserError says why when they cannot be."""
    if run.outcomes:
        return run.outcomes, None
    learner = run.learner
    evaluate = evaluator_for(learner)
    if isinstance(evaluate, FrozenEvaluation) and learner.can_recognise():
        steps = [evaluate(learner, tasks[:s + 1])[3] for s in range(run.tasks_done)]
        how = "recomputed from the run's frozen subnetworks and class statistics"
    elif run.snapshots and learner.method not in ("icarl", "rerelrp"):
        steps = _from_snapshots(run, tasks)
        how = "recomputed from the run's float16 weight snapshots"
    else:
        raise UserError("This run was saved before per-image outcomes were kept, and its earlier steps "
                        "cannot be recomputed (no per-task snapshots); train it again to trace its "
                        "forgetting.")
    return steps, _checked(run, tasks, steps, how)


def _from_snapshots(run, tasks):
    twin = run.learner.replica()
    steps = []
    for s in range(run.tasks_done):
        twin.model.load_state_dict({k: v.float() for k, v in run.snapshots[s].items()})
        twin.tasks = run.learner.tasks[:s + 1]
        steps.append(evaluate_step(twin, tasks[:s + 1])[3])
    return steps


def _checked(run, tasks, steps, how):
    """``how`` as a sentence, naming the cells where the recomputed outcomes differ from the matrices."""
    differ = []
    for kind in KINDS:
        recorded = run.history[f"acc_{kind}"]
        for s, step in enumerate(steps):
            for t, outcome in enumerate(step):
                if abs(outcome_accuracy(outcome, tasks[t], kind) - recorded[s][t]) > 1e-9:
                    differ.append(f"{kind} ({s}, {t})")
    if not differ:
        return f"Per-image outcomes {how}; they reproduce every cell of both matrices."
    cells = "1 cell differs" if len(differ) == 1 else f"{len(differ)} cells differ"
    return (f"Per-image outcomes {how}; {cells} slightly from the recorded matrices "
            f"({', '.join(differ[:4])}{', …' if len(differ) > 4 else ''}).")


def _predicted_name(run, task, kind, value):
    if kind == "taw":
        return task.class_names[int(value)]
    owner, within = class_of_row(run.tasks, int(value))
    return owner.class_names[within]


def cell_trace(run, outcomes, tasks, step, task, kind="tag"):
    """What changed in accuracy-matrix cell (``step``, ``task``) of ``kind`` (``taw``/``tag``) since
    the task was learnt: ``lost`` and ``recovered`` images (each a dict: test ``index``, true
    ``class``, class predicted ``then`` and ``now``, task recognised then and now, probability of
    the true class then and now and its drop ``p lost``), the accuracies then and now and their
    ``change`` (points), which is exactly (recovered - lost) / images. Images that lost most
    confidence come first."""
    if kind not in KINDS:
        raise UserError(f"Unknown matrix {kind!r}; choose taw or tag.")
    if not 0 <= task <= step < len(outcomes):
        raise UserError(f"Cell (step {step}, task {task}) is not in the matrix (steps 0-{len(outcomes) - 1}, "
                        "task at most the step).")
    spec = tasks[task]
    then, now = outcomes[task][task], outcomes[step][task]
    right_then, right_now = correct(then, spec, kind), correct(now, spec, kind)
    p = f"p_{kind}"

    def rows(mask):
        index = torch.nonzero(mask).flatten()
        drop = then[p].float()[index] - now[p].float()[index]
        order = torch.argsort(drop, descending=True, stable=True)
        return [{"index": int(i), "class": spec.class_names[int(spec.y_test[i])],
                 "then": _predicted_name(run, spec, kind, then[kind][i]),
                 "now": _predicted_name(run, spec, kind, now[kind][i]),
                 "task then": int(then["task"][i]), "task now": int(now["task"][i]),
                 "p then": round(float(then[p][i]), 4), "p now": round(float(now[p][i]), 4),
                 "p lost": round(float(d), 4)} for i, d in zip(index[order], drop[order])]

    n = len(spec.y_test)
    lost, recovered = rows(right_then & ~right_now), rows(~right_then & right_now)
    return {"kind": kind, "step": step, "task": task, "images": n, "lost": lost, "recovered": recovered,
            "right then": int(right_then.sum()), "right now": int(right_now.sum()),
            "then": outcome_accuracy(then, spec, kind), "now": outcome_accuracy(now, spec, kind),
            "change": 100.0 * (len(recovered) - len(lost)) / n if n else 0.0}


def image_rows(run, outcomes, tasks, step, task, indices, kind="tag"):
    """For test images ``indices`` of ``task`` after ``step``: true ``class``, class predicted
    ``now`` (of matrix ``kind``), ``task now`` recognised and ``p now`` of the true class."""
    spec, now = tasks[task], outcomes[step][task]
    return [{"task": task, "index": int(i), "class": spec.class_names[int(spec.y_test[i])],
             "now": _predicted_name(run, spec, kind, now[kind][i]), "task now": int(now["task"][i]),
             "p now": round(float(now[f"p_{kind}"][i]), 4)} for i in indices]


def recognition_confusion(outcomes, tasks, step):
    """After ``step``: ``counts[t][r]``, the test images of task t recognised as task r (for a
    method without a recogniser, the task of the class it predicted), ``within[t]``, those
    recognised right but given a wrong class, and the share of all task-agnostic mistakes of the
    step that each off-diagonal cell and each task's within-task mistakes explain (shares sum to 1)."""
    seen = outcomes[step]
    n = len(seen)
    counts = np.zeros((n, n), dtype=np.int64)
    within = np.zeros(n, dtype=np.int64)
    for t, outcome in enumerate(seen):
        counts[t] = np.bincount(outcome["task"].long().numpy(), minlength=n)[:n]
        within[t] = int(((outcome["task"].long() == t) & ~correct(outcome, tasks[t], "tag")).sum())
    wrong = int(counts.sum() - np.trace(counts) + within.sum())
    off = counts * (1 - np.eye(n, dtype=np.int64))
    return {"counts": counts.tolist(), "within": within.tolist(), "mistakes": wrong,
            "shares": (off / wrong if wrong else off * 0.0).tolist(),
            "within_shares": (within / wrong if wrong else within * 0.0).tolist(),
            "images": [len(tasks[t].y_test) for t in range(n)]}


def confused_images(outcomes, step, true_task, recognised):
    """Test indices of task ``true_task``'s images recognised as ``recognised`` after ``step``."""
    return torch.nonzero(outcomes[step][true_task]["task"].long() == recognised).flatten().tolist()


def last_outcomes(run, tasks):
    """The outcomes of the run's last step: recorded, or worked out from its final state (exact for
    every method, and checked against the matrix's last row)."""
    if run.outcomes:
        return run.outcomes[-1]
    last = evaluate_step(run.learner, tasks[:run.tasks_done])[3]
    for kind in KINDS:
        if any(abs(outcome_accuracy(o, tasks[t], kind) - run.history[f"acc_{kind}"][-1][t]) > 1e-9
               for t, o in enumerate(last)):
            raise UserError("This run's final state does not give its recorded accuracies; it cannot be "
                            "compared image by image.")
    return last


def compare_runs(first, second, tasks, kind="tag"):
    """After the last step of two runs on the same split (``first``, ``second``: their
    :func:`last_outcomes`): ``counts[a][b]`` images right (1) or wrong (0) in the first and second
    run, and ``images``, the (task, test index) pairs of every cell, keyed ``"a,b"``."""
    if len(first) != len(second):
        raise UserError(f"The runs have learnt {len(first)} and {len(second)} tasks; compare runs that have "
                        "learnt as many.")
    counts = np.zeros((2, 2), dtype=np.int64)
    images = {f"{a},{b}": [] for a in (0, 1) for b in (0, 1)}
    for t, (mine, theirs) in enumerate(zip(first, second)):
        a, b = correct(mine, tasks[t], kind), correct(theirs, tasks[t], kind)
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            counts[int(x), int(y)] += 1
            images[f"{int(x)},{int(y)}"].append((t, i))
    return {"counts": counts.tolist(), "images": images}


def outcomes_table(run, trace):
    """The rows of a :func:`cell_trace` as a CSV-ready list (lost first, then recovered)."""
    return [{"change": change, "task": trace["task"], "step": trace["step"], "matrix": KINDS[trace["kind"]],
             **row} for change in ("lost", "recovered") for row in trace[change]]


def image_change(run, x, task, target_row, step):
    """What moved inside the network for one test image of ``task`` between right after its task
    and after ``step``, through what task-aware prediction of the task uses (its subnetwork for
    ReReLRP): input heatmaps then and now and their difference, the units whose relevance for it
    changed most, and per unit layer how far the weights of the units it uses (and of the rest)
    moved. Needs per-task snapshots."""
    if not run.snapshots:
        raise UserError("This run kept no per-task weight snapshots, so what moved inside it cannot be shown "
                        "(runs trained on the Train page keep them).")
    masks = run.learner.task_masks(task)
    model = copy.deepcopy(run.model).cpu()
    target, cpu = torch.tensor([target_row]), torch.device("cpu")
    heat, units = [], []
    for s in (task, step):
        model.load_state_dict({k: v.float() for k, v in run.snapshots[s].items()})
        heat.append(input_heatmap(model, x, target, masks=masks, device=cpu)[0].sum(0).numpy())
        units.append([r[0].numpy() for r in unit_relevance(model, x, target, masks=masks, device=cpu)])
    (heat_then, heat_now), (units_then, units_now) = heat, units
    return {"then": heat_then, "now": heat_now, "difference": heat_now - heat_then,
            "units": _changed_units(run, units_then, units_now),
            "layers": weight_movement(run, task, step, masks)}


def _changed_units(run, then, now, most=8):
    """The ``most`` units whose (normalised) relevance changed most, largest change first."""
    changes = [{"layer": name, "unit": u, "then": float(a), "now": float(b)}
               for name, old, new in zip(run.layer_names, then, now)
               for u, (a, b) in enumerate(zip(old, new))]
    changes.sort(key=lambda c: -abs(c["now"] - c["then"]))
    return [c for c in changes[:most] if c["now"] != c["then"]]


def weight_movement(run, task, step, masks=None):
    """Per unit layer, the relative change ||w_step - w_task|| / ||w_task|| of its units' parameters
    between the snapshots after ``task`` and after ``step``: of the units in ``masks`` (the task's
    subnetwork; all units when None) and of the other units (None when there are none)."""
    then, now = run.snapshots[task], run.snapshots[step]
    names = {id(p): n for n, p in run.model.named_parameters()}
    out = []
    for i, layer in enumerate(run.model.unit_layers):
        used = torch.ones(layer.n_units, dtype=torch.bool) if masks is None else masks[i].cpu() > 0
        parts = {"used": [0.0, 0.0], "other": [0.0, 0.0]}
        for p in layer.unit_parameters():
            a, b = then[names[id(p)]].float(), now[names[id(p)]].float()
            for part, rows in (("used", used), ("other", ~used)):
                parts[part][0] += float(((b[rows] - a[rows]) ** 2).sum())
                parts[part][1] += float((a[rows] ** 2).sum())
        out.append({"layer": layer.name, **{part: (moved / base) ** 0.5 if base else None
                                            for part, (moved, base) in parts.items()}})
    return out
