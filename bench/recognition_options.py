"""Compare task-recognition options on trained ReReLRP runs, choosing on validation data only.

Subnetwork m never changes after task m, so every option's relevance features and class statistics
can be recomputed from the final model. Each option is scored on the validation images its
recognisers never saw; the test split is printed beside it only for the report. With several runs
(class orders, seeds) each option's scores are also averaged over them.

    .venv/bin/python bench/recognition_options.py RUN_FOLDER [RUN_FOLDER ...] [--options NAME ...]
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.data import make_tasks  # noqa: E402
from rerelrp_core.learners import accuracy  # noqa: E402
from rerelrp_core.learners.rerelrp import make_recogniser  # noqa: E402
from rerelrp_core.recognition import RECOGNITION_PRESETS, recognition_config  # noqa: E402
from rerelrp_core.runs import load_run  # noqa: E402

from common import dataset_named, machine, write_results  # noqa: E402

FAITHFUL = RECOGNITION_PRESETS["faithful"]
SUBNETWORK = {"space": "subnetwork"}
# class Gaussians (the default, in the input space) and its settings
GAUSSIAN = {
    "gaussian (default: input space, grid 14, power 0.5, width 128)": {},
    "gaussian, input, power 1": {"power": 1.0},
    "gaussian, input, grid 28": {"input_grid": 28},
    "gaussian, input, width 64": {"width": 64},
    "gaussian, input, rank 16": {"rank": 16},
} | {name: SUBNETWORK | changes for name, changes in {
    "gaussian, subnetwork space (default before format 9)": {},
    "gaussian, subnetwork, session-5 default (1 per class, grid 2, unprojected)": {
        "components": 1, "first_grid": 2, "width": 0},
    "gaussian, subnetwork, 1 per class": {"components": 1},
    "gaussian, subnetwork, 2 per class": {"components": 2},
    "gaussian, subnetwork, 5 per class, rank 24": {"components": 5, "rank": 24},
    "gaussian, subnetwork, 6 per class, rank 20": {"components": 6, "rank": 20},
    # wider projections at a lower rank, in about the same bytes per task (46-48 kB)
    "gaussian, subnetwork, width 144, rank 28": {"width": 144, "rank": 28},
    "gaussian, subnetwork, width 160, rank 24": {"width": 160, "rank": 24},
    "gaussian, subnetwork, width 192, rank 20": {"width": 192, "rank": 20},
    "gaussian, subnetwork, first grid 2": {"first_grid": 2},
    "gaussian, subnetwork, unprojected": {"width": 0},
    "gaussian, subnetwork, shrink 0.01": {"shrink": 0.01},
    "gaussian, subnetwork, shrink 0.3": {"shrink": 0.3},
    "gaussian, subnetwork, power 1 (no transform)": {"power": 1.0},
}.items()} | {
    "forest, context, 300 val/class (previous default)": {"kind": "forest"},
}
# the forest options: the faithful recogniser with some settings changed
OPTIONS = GAUSSIAN | {name: {**FAITHFUL, **changes} for name, changes in {
    "faithful (top40, ref+100 val)": {},
    "+logits": {"with_logits": True},
    "all units": {"top_k": 0},
    "context (subnetworks 0..m)": {"context": True},
    "context, 300 val/class": {"context": True, "val_per_class": 300},
    "300 val/class": {"val_per_class": 300},
    "chain-full": {"chain": "chain-full"},
    "context, 300 val/class, 300 ref/class": {"context": True, "val_per_class": 300, "ref_per_class": 300},
    "context, 300 val/class, +logits": {"context": True, "val_per_class": 300, "with_logits": True},
    "context, 300 val/class, top 20": {"context": True, "val_per_class": 300, "top_k": 20},
    "context, 300 val/class, top 80": {"context": True, "val_per_class": 300, "top_k": 80},
}.items()}



def recognition_scores(learner, tasks, part):
    """(task recognition %, TAg %) averaged over tasks, on ``part``: 'heldout' validation or 'test'."""
    rec, tag = [], []
    for task in tasks:
        if part == "test":
            x, y = task.x_test, task.y_test
        else:
            unseen = torch.ones(len(task.y_val), dtype=torch.bool)
            unseen[learner.recognition_indices(task)] = False
            x, y = task.x_val[unseen], task.y_val[unseen]
            if not len(x):
                raise SystemExit(f"task {task.index}: every validation image trains the recognisers "
                                 "(val_per_class too large for this data set); nothing is left to score on")
        result = learner.recognise(x)
        rec.append(accuracy(result["task"], torch.full_like(y, task.index)))
        tag.append(accuracy(result["predicted"], y + task.offset))
    return sum(rec) / len(rec), sum(tag) / len(tag)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--options", nargs="*", help="subset of option names")
    parser.add_argument("--name", help="result file name")
    args = parser.parse_args()
    meta = machine("cpu")
    print(meta)
    runs = {folder: load_run(folder, device="cpu") for folder in args.runs}
    rows = [row for folder, run in runs.items() for row in option_rows(run, Path(folder).name, args.options)]
    print(f"\n{'option':60} {'val rec':>8} {'val TAg':>8} {'test rec':>9} {'test TAg':>9}  runs")
    for name in dict.fromkeys(r["option"] for r in rows):
        mine = [r for r in rows if r["option"] == name]
        means = [sum(r[key] for r in mine) / len(mine) for key in ("val_task_rec", "val_tag", "test_task_rec",
                                                                    "test_tag")]
        print(f"{name:60} {means[0]:8.2f} {means[1]:8.2f} {means[2]:9.2f} {means[3]:9.2f}  {len(mine)}")
    run = runs[args.runs[0]]
    write_results(args.name or f"recognition-options-{run.dataset}-seed{run.config.seed}", rows, meta)


def option_rows(run, label, chosen):
    """One row per option: its recognition and TAg on validation and test images of ``run`` (named
    ``label`` in the rows), its recognisers retrained from the run's final model."""
    learner = run.learner
    tasks = make_tasks(dataset_named(run.dataset), run.split)[:run.tasks_done]
    base_config = learner.config
    rows = []
    for name, overrides in OPTIONS.items():
        if chosen and name not in chosen:
            continue
        # ref_per_class belongs to the training settings (the reference set also drives pruning,
        # which is already done here); the rest are recognition settings
        learner.config = replace(base_config,
                                 ref_per_class=overrides.get("ref_per_class", base_config.ref_per_class))
        options = recognition_config({k: v for k, v in overrides.items() if k != "ref_per_class"})
        learner.recogniser = make_recogniser(options, learner.model, base_config.seed)
        for task in tasks:
            learner.recogniser.learn_task(learner, task)
        val_rec, val_tag = recognition_scores(learner, tasks, "heldout")
        test_rec, test_tag = recognition_scores(learner, tasks, "test")
        rows.append({"run": label, "class_order": run.split.class_order, "option": name,
                     "val_task_rec": round(val_rec, 2), "val_tag": round(val_tag, 2),
                     "test_task_rec": round(test_rec, 2), "test_tag": round(test_tag, 2)})
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
