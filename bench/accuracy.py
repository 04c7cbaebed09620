"""Accuracy benchmark: final average TAw/TAg accuracy, forgetting and task recognition for every
method over several seeds, next to the paper's numbers (Split Fashion-MNIST 5x2).

    .venv/bin/python bench/accuracy.py --dataset fashion-mnist --methods rerelrp finetune joint --seeds 0 1 2
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.recognition import RECOGNITION_PRESETS  # noqa: E402
from rerelrp_core.runs import save_run  # noqa: E402
from rerelrp_core.sweep import parse_value  # noqa: E402

from common import open_dataset, timed_sequence, write_results  # noqa: E402

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
    parser.add_argument("--save-runs", help="folder to save every run in (for bench/recognition_options.py)")
    parser.add_argument("--name", default=None, help="result file name (default accuracy-DATASET)")
    args = parser.parse_args()
    recognition = {**RECOGNITION_PRESETS[args.preset],
                   **{k: parse_value(v) for k, v in (item.split("=", 1) for item in args.recognition)}}
    dataset, meta = open_dataset(args.dataset)
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            config = TrainConfig(method=method, seed=seed, epochs=args.epochs, recognition=recognition)
            run, outcome = timed_sequence(dataset, args.tasks, config)
            if run is None:
                rows.append({"method": method, "seed": seed, "error": outcome})
            else:
                if args.save_runs:
                    save_run(run, Path(args.save_runs) / f"{args.dataset}-{method}-seed{seed}")
                rows.append(result_row(method, seed, run.metrics, outcome))
                print(rows[-1], flush=True)
            # after every run, so a benchmark stopped part-way keeps what it finished
            write_results(args.name or f"accuracy-{args.dataset}", rows, {**meta, "recognition": recognition})
    print_table(rows, args.dataset)


def result_row(method, seed, m, seconds):
    return {"method": method, "seed": seed,
            "avg_acc_taw": m["avg_acc_taw"][-1], "avg_acc_tag": m["avg_acc_tag"][-1],
            "forgetting_taw": m["forgetting_taw"], "forgetting_tag": m["forgetting_tag"],
            "task_recognition_acc": m.get("task_recognition_acc"), "train_s": m["timing_s"]["train"],
            "consolidate_s": m["timing_s"]["consolidate"], "evaluate_s": m["timing_s"]["evaluate"],
            "total_s": round(seconds, 1), "stored_bytes_total": sum(m["stored_bytes_per_task"])}


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
