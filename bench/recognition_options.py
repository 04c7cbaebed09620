"""Compare task-recognition options on a trained ReReLRP run, choosing on validation data only.

Subnetwork m never changes after task m, so every option's relevance features can be recomputed
from the final model. Each option is scored on the validation images its recognisers never saw;
the test split is printed beside it only for the report.

    .venv/bin/python bench/recognition_options.py RUN_FOLDER
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.data import load_dataset, make_tasks  # noqa: E402
from rerelrp_core.learners import accuracy  # noqa: E402
from rerelrp_core.learners.rerelrp import make_recogniser  # noqa: E402
from rerelrp_core.recognition import RECOGNITION_PRESETS, recognition_config  # noqa: E402
from rerelrp_core.runs import load_run  # noqa: E402

from common import machine, write_results  # noqa: E402

FAITHFUL = RECOGNITION_PRESETS["faithful"]
# class Gaussians (the default) and its settings
GAUSSIAN = {
    "gaussian (default: 4 clusters per class, first grid 3, width 128)": {},
    "gaussian, session-5 default (1 per class, grid 2, unprojected)": {"components": 1, "first_grid": 2,
                                                                      "width": 0},
    "gaussian, 1 per class": {"components": 1},
    "gaussian, 2 per class": {"components": 2},
    "gaussian, 5 per class, rank 24": {"components": 5, "rank": 24},
    "gaussian, 6 per class, rank 20": {"components": 6, "rank": 20},
    # wider projections at a lower rank, in about the same bytes per task (46-48 kB)
    "gaussian, width 144, rank 28": {"width": 144, "rank": 28},
    "gaussian, width 160, rank 24": {"width": 160, "rank": 24},
    "gaussian, width 192, rank 20": {"width": 192, "rank": 20},
    "gaussian, first grid 2": {"first_grid": 2},
    "gaussian, unprojected": {"width": 0},
    "gaussian, shrink 0.01": {"shrink": 0.01},
    "gaussian, shrink 0.3": {"shrink": 0.3},
    "gaussian, power 1 (no transform)": {"power": 1.0},
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
    parser.add_argument("run")
    parser.add_argument("--options", nargs="*", help="subset of option names")
    parser.add_argument("--name", help="result file name")
    args = parser.parse_args()
    run = load_run(args.run)
    learner = run.learner
    tasks = make_tasks(load_dataset(run.dataset), run.split)[:run.tasks_done]
    meta = machine(learner.device)
    print(meta)
    base_config = learner.config
    rows = []
    for name, overrides in OPTIONS.items():
        if args.options and name not in args.options:
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
        rows.append({"option": name, "val_task_rec": round(val_rec, 2), "val_tag": round(val_tag, 2),
                     "test_task_rec": round(test_rec, 2), "test_tag": round(test_tag, 2)})
        print(rows[-1], flush=True)
    print(f"\n{'option':38} {'val rec':>8} {'val TAg':>8} {'test rec':>9} {'test TAg':>9}")
    for r in rows:
        print(f"{r['option']:38} {r['val_task_rec']:8.2f} {r['val_tag']:8.2f} "
              f"{r['test_task_rec']:9.2f} {r['test_tag']:9.2f}")
    write_results(args.name or f"recognition-options-{run.dataset}-seed{run.config.seed}", rows, meta)


if __name__ == "__main__":
    main()
