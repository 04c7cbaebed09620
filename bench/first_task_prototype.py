"""Prototype, not an engine setting (#13): task 0 pruned with its own acc_drop, and the cluster's
volume added to the class-Gaussian distance. Reproduces the session-8 and session-10 explorations in
bench/README.md.

Subnetwork 0 is the recogniser's feature extractor; pruning task 0 less leaves it more units. The
volume term adds ``volume * s * logdet`` to the distance to each cluster, where ``s`` is the
cluster's mean variance and ``logdet`` the log-determinant of its normalised, shrunk covariance
(the shape part of a Gaussian's log-likelihood, in the distance's units). Trains a run per seed
(Split Fashion-MNIST unless ``--dataset`` says otherwise; task 0 with ``--first-acc-drop``, every
other task with ``--acc-drop``, by default the engine's), saves it, and prints validation and test
TAg with the default distance and with the volume term.

    .venv/bin/python bench/first_task_prototype.py --first-acc-drop 0 --seeds 0 1 2 --out runs/
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks  # noqa: E402
from rerelrp_core.learners import accuracy  # noqa: E402
from rerelrp_core.learners.rerelrp import ReReLRP  # noqa: E402
from rerelrp_core.runs import save_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402
from rerelrp_core.tasks import task_of_rows  # noqa: E402


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


def cluster_volumes(recogniser):
    """Per cluster (every task's, in stacked order): s * logdet of its normalised, shrunk covariance."""
    return torch.cat([s * torch.linalg.slogdet(shrunk)[1] for _, s, shrunk in recogniser.covariances()])


def tag(learner, tasks, part, volume):
    """Mean TAg over tasks on ``part`` (val or test): the nearest class's task by the distance plus
    ``volume`` times each cluster's volume, then that task's subnetwork picks the class."""
    recogniser = learner.recogniser
    means, precisions, classes = recogniser.stacked_clusters()
    extra = volume * cluster_volumes(recogniser)
    scores = []
    for task in tasks:
        x, y = getattr(task, f"x_{part}"), getattr(task, f"y_{part}")
        centred = recogniser.features(learner, x)[None] - means[:, None]
        distance = (torch.bmm(centred, precisions) * centred).sum(2).T + extra
        nearest = distance.new_full((len(x), int(classes.max()) + 1), torch.inf).scatter_reduce(
            1, classes.expand(len(x), -1), distance, "amin")
        predicted = recogniser.within_task(learner, x, task_of_rows(learner.tasks)[nearest.argmin(1)])
        scores.append(accuracy(predicted, y + task.offset))
    return sum(scores) / len(scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--acc-drop", type=float, default=TrainConfig.acc_drop, help="every other task's")
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
