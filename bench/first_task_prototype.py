"""Prototype (#13): task 0 pruned under its own acc_drop (patched, not an engine setting), scored
with and without the class Gaussians' volume term (recognition setting ``volume``). Reproduces the
session-8, 10 and 11 explorations in bench/README.md.

Subnetwork 0 is the recogniser's feature extractor; pruning task 0 less leaves it more units. Trains
a run per seed (Split Fashion-MNIST unless ``--dataset`` says otherwise; task 0 under
``--first-acc-drop``, every other task under ``--acc-drop``, 1 by default), saves it, and prints
validation and test TAg with volume 0 and with ``--volume``.

    .venv/bin/python bench/first_task_prototype.py --first-acc-drop 0 --seeds 0 1 2 --out runs/
"""
import argparse
import copy
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks  # noqa: E402
from rerelrp_core.learners import accuracy  # noqa: E402
from rerelrp_core.learners.rerelrp import ReReLRP  # noqa: E402
from rerelrp_core.runs import save_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402


def first_task_acc_drop(acc_drop):
    """ReReLRP.consolidate with ``acc_drop`` for task 0 only (a prototype: patched, not configured)."""
    consolidate = ReReLRP.consolidate

    def patched(self, task, progress=None):
        config = self.config
        self.config = replace(config, acc_drop=acc_drop) if task.index == 0 else config
        try:
            return consolidate(self, task, progress)
        finally:
            self.config = config
    ReReLRP.consolidate = patched


def tag(learner, tasks, part, volume):
    """Mean TAg over tasks on ``part`` (val or test), the recogniser rebuilt from the same stored
    statistics with the volume weight ``volume``."""
    learner = copy.copy(learner)
    learner.recogniser = recogniser = copy.copy(learner.recogniser)
    recogniser.config, recogniser._clusters = replace(recogniser.config, volume=volume), None
    scores = [accuracy(learner.predict_tag(getattr(task, f"x_{part}")),
                       getattr(task, f"y_{part}") + task.offset) for task in tasks]
    return sum(scores) / len(scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--acc-drop", type=float, default=1.0,
                        help="every other task's (1, the paper's, as in the session-8 runs)")
    parser.add_argument("--first-acc-drop", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--volume", type=float, default=0.03)
    parser.add_argument("--out", default="runs", help="folder for the trained runs")
    args = parser.parse_args()
    first_task_acc_drop(args.first_acc_drop)
    dataset = load_dataset(args.dataset)
    for seed in args.seeds:
        config = TrainConfig(seed=seed, acc_drop=args.acc_drop)
        run = train_sequence(dataset, SplitConfig(n_tasks=5, seed=seed), config, evaluate_on="validation")
        name = f"{args.dataset}-acc-drop-{config.acc_drop}-first-{args.first_acc_drop}-seed{seed}"
        save_run(run, Path(args.out) / name)
        tasks = make_tasks(dataset, run.split)
        kept = [entry["kept"] for entry in run.learner.prune_log]
        figures = {f"{part} TAg, volume {v}": round(tag(run.learner, tasks, part, v), 2)
                   for part in ("val", "test") for v in (0.0, args.volume)}
        print(f"seed {seed}: kept per task {kept}, {figures}", flush=True)


if __name__ == "__main__":
    main()
