"""Accuracy benchmark: final average TAw/TAg accuracy, forgetting and task recognition for every
method over several seeds, next to the paper's numbers (Split Fashion-MNIST 5x2). The runs go
through the Ray sweep (one at a time with all cores by default, so times stay comparable;
``--address`` spreads them over a cluster).

    .venv/bin/python bench/accuracy.py --dataset fashion-mnist --methods rerelrp finetune joint --seeds 0 1 2
"""
import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.learners import resolve_device  # noqa: E402
from rerelrp_core.recognition import RECOGNITION_PRESETS  # noqa: E402
from rerelrp_core.sweep import parse_value, plan, run_sweep  # noqa: E402

from common import machine, write_results  # noqa: E402

# Final average accuracy (%) reported in arXiv 2502.10789 for Split Fashion-MNIST 5x2.
PAPER = {"rerelrp": (63.54, 95.88), "icarl": (64.04, 97.39), "lwf": (25.17, 97.93), "ewc": (24.49, 96.71),
         "joint": (89.08, 99.36)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["rerelrp", "finetune", "joint"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--recognition", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recognition overrides, e.g. with_logits=1 top_k=0")
    parser.add_argument("--preset", default="ours", help="recognition preset: ours or faithful")
    parser.add_argument("--save-runs", help="folder to keep every run in (for bench/recognition_options.py; "
                                            "a finished run there is not trained again)")
    parser.add_argument("--address", help="an existing Ray cluster to spread the runs over (default: local)")
    parser.add_argument("--cpus-per-run", type=float, default=os.cpu_count(),
                        help="CPUs per run (default: all cores, one run at a time, so times compare)")
    parser.add_argument("--name", default=None, help="result file name (default accuracy-DATASET)")
    args = parser.parse_args()
    recognition = {**RECOGNITION_PRESETS[args.preset],
                   **{k: parse_value(v) for k, v in (item.split("=", 1) for item in args.recognition)}}
    meta = machine(resolve_device("auto"))
    print(meta)
    # every method x seed is one run of a sweep on Ray (rerelrp_core/sweep.py), one folder each
    runs = plan(args.dataset, args.methods, args.seeds, args.tasks,
                {"epochs": [args.epochs], "recognition": [recognition]})
    folder = Path(args.save_runs) if args.save_runs else Path(tempfile.mkdtemp(prefix="accuracy-runs-"))
    summary = run_sweep(runs, folder, args.address, args.cpus_per_run)
    rows = [result_row(row) for row in summary]
    for row in rows:
        print(row, flush=True)
    write_results(args.name or f"accuracy-{args.dataset}", rows, {**meta, "recognition": recognition})
    print_table(rows, args.dataset)


def result_row(row):
    """A sweep summary row under the keys this benchmark has always written."""
    if "error" in row:
        return {"method": row["method"], "seed": row["seed"], "error": row["error"]}
    return {"method": row["method"], "seed": row["seed"], "avg_acc_taw": row["final_taw"],
            "avg_acc_tag": row["final_tag"], "forgetting_taw": row["forgetting_taw"],
            "forgetting_tag": row["forgetting_tag"], "task_recognition_acc": row["task_recognition_acc"],
            "train_s": row["train_s"], "consolidate_s": row["consolidate_s"], "evaluate_s": row["evaluate_s"],
            "total_s": row["run_s"], "stored_bytes_total": row["stored_bytes"]}


def print_table(rows, dataset):
    print(f"\n{dataset}: final average accuracy, mean ± std over seeds (paper: Split Fashion-MNIST 5x2)")
    print(f"{'method':10} {'TAg':>14} {'TAw':>14} {'forget TAg':>11} {'forget TAw':>11} {'task rec.':>10} "
          f"{'paper TAg/TAw':>15}")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and "error" not in r]
        if not mine:
            print(f"{method:10} failed: {next(r['error'] for r in rows if r['method'] == method)}")
            continue

        def stat(key):
            return _mean_std([r[key] for r in mine if r[key] is not None])

        paper = "/".join(f"{v:.2f}" for v in PAPER[method]) if method in PAPER else "-"
        print(f"{method:10} {stat('avg_acc_tag'):>14} {stat('avg_acc_taw'):>14} {stat('forgetting_tag'):>11} "
              f"{stat('forgetting_taw'):>11} {stat('task_recognition_acc'):>10} {paper:>15}")


def _mean_std(values):
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f}±{std:.2f}"


if __name__ == "__main__":
    main()
