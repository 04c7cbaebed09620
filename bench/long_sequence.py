"""Long-sequence benchmark: 10 tasks x 2 classes over MNIST-5k digits then Fashion-MNIST classes
(data set ``mnist5k-fashion``, 400 training / 100 test images per class). Prints, for every step,
each method's average TAw/TAg accuracy over the tasks seen so far and ReReLRP's free capacity per
layer, and writes one row per (method, seed, step).

    .venv/bin/python bench/long_sequence.py --methods rerelrp finetune icarl --seeds 0
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.recognition import RECOGNITION_PRESETS  # noqa: E402

from common import open_dataset, timed_sequence, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist5k-fashion")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=["rerelrp", "finetune", "icarl"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--acc-drop", type=float, default=2.0,
                        help="pruning budget in points; "
                             "40 validation images per class make 1 point < 1 image")
    parser.add_argument("--recognition", default="ours", choices=sorted(RECOGNITION_PRESETS),
                        help="ReReLRP's task recognition preset")
    parser.add_argument("--name", help="result file name (default long-sequence-DATASET)")
    args = parser.parse_args()
    dataset, meta = open_dataset(args.dataset)
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            config = TrainConfig(method=method, seed=seed, acc_drop=args.acc_drop,
                                 recognition=dict(RECOGNITION_PRESETS[args.recognition]))
            run, outcome = timed_sequence(dataset, args.tasks, config)
            if run is None:
                rows.append({"method": method, "seed": seed, "error": outcome})
                continue
            rows += step_rows(method, seed, run.metrics, outcome)
            print(f"{method} seed {seed}: {outcome:.0f} s", flush=True)
    print_table(rows)
    write_results(args.name or f"long-sequence-{args.dataset}", rows,
                  {**meta, "acc_drop": args.acc_drop, "recognition": args.recognition})


def step_rows(method, seed, metrics, seconds):
    """One row per step: average accuracies, accuracy on task 0 (how the first task fares), free
    fraction of every layer and units the new task kept (ReReLRP only)."""
    rows = []
    capacity = metrics.get("capacity") or []
    units = (metrics.get("units") or {}).get("per_task", [])
    for step, (taw, tag) in enumerate(zip(metrics["avg_acc_taw"], metrics["avg_acc_tag"])):
        row = {"method": method, "seed": seed, "step": step, "avg_acc_taw": taw, "avg_acc_tag": tag,
               "task0_taw": metrics["acc_taw"][step][0], "task0_tag": metrics["acc_tag"][step][0]}
        if step < len(capacity):
            row.update({f"free_{layer}": fraction for layer, fraction in capacity[step].items()})
            row["units_kept"] = sum(units[step]["kept"].values())
        row["run_s"] = round(seconds, 1)
        rows.append(row)
    return rows


def print_table(rows):
    print("\nper step: average TAw / TAg over the tasks seen so far (%); "
          "free = share of a layer's units no task owns")
    for method in dict.fromkeys(r["method"] for r in rows):
        for row in (r for r in rows if r["method"] == method):
            if "error" in row:
                print(f"{method:9} seed {row['seed']} failed: {row['error']}")
                continue
            free = " ".join(f"{k[5:]} {v:.2f}" for k, v in row.items() if k.startswith("free_"))
            print(f"{method:9} seed {row['seed']} step {row['step']:2d}  TAw {row['avg_acc_taw']:6.2f}  "
                  f"TAg {row['avg_acc_tag']:6.2f}  task0 TAw {row['task0_taw']:6.2f}  {free}")


if __name__ == "__main__":
    main()
