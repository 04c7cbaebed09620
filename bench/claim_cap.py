"""Choose the claim cap (``max_claim_fraction``: the largest share of each layer's free units one task
may freeze) on validation images. For every cap and seed it trains a whole sequence and prints the
final TAw / TAg on the validation images of all tasks (what the choice is made on), the same on the
test images (reported, not used), the least free share of any layer, the units the cap pruned, and
the tasks where it gave way (it cost more than ``--tolerances`` points beyond acc_drop).

    .venv/bin/python bench/claim_cap.py --dataset mnist5k-fashion --tasks 10 --caps 1 0.9 0.75 0.5
    .venv/bin/python bench/claim_cap.py --caps 0.75 --tolerances 0 1
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.data import SplitConfig, make_tasks  # noqa: E402

from common import accuracies, open_dataset, timed_sequence, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist5k-fashion")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--caps", type=float, nargs="+", default=[1.0, 0.9, 0.75, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.0],
                        help="claim_cap_tolerance values (points beyond acc_drop the cap may cost)")
    parser.add_argument("--acc-drop", type=float, default=2.0)
    parser.add_argument("--name")
    args = parser.parse_args()
    dataset, meta = open_dataset(args.dataset)
    rows = []
    grid = [(cap, tolerance) for cap in args.caps for tolerance in args.tolerances]
    for cap, tolerance in grid:
        for seed in args.seeds:
            config = TrainConfig(seed=seed, acc_drop=args.acc_drop, max_claim_fraction=cap,
                                 claim_cap_tolerance=tolerance)
            run, seconds = timed_sequence(dataset, args.tasks, config)
            tasks = make_tasks(dataset, SplitConfig(n_tasks=args.tasks, seed=seed))
            val_taw, val_tag = accuracies(run.learner, tasks, "val")
            test_taw, test_tag = accuracies(run.learner, tasks, "test")
            rows.append({"cap": cap, "tolerance": tolerance, "seed": seed, "val_taw": val_taw,
                         "val_tag": val_tag,
                         "test_taw": test_taw, "test_tag": test_tag,
                         "least_free": min(run.learner.ownership.free_fraction()),
                         "capped_units": sum(p["capped"] for p in run.learner.prune_log),
                         "gave_way": [p["task"] for p in run.learner.prune_log
                                      if p["capped"] and p["val_acc_before"] - p["val_acc_after"]
                                      > args.acc_drop + tolerance],
                         "run_s": round(seconds, 1)})
            print(" ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in rows[-1].items()), flush=True)
    for cap, tolerance in grid:
        mine = [r for r in rows if (r["cap"], r["tolerance"]) == (cap, tolerance)]
        mean = {k: sum(r[k] for r in mine) / len(mine)
                for k in ("val_taw", "val_tag", "test_taw", "test_tag")}
        print(f"cap {cap} tolerance {tolerance}: validation TAw {mean['val_taw']:.2f} "
              f"TAg {mean['val_tag']:.2f} | "
              f"test TAw {mean['test_taw']:.2f} TAg {mean['test_tag']:.2f}")
    write_results(args.name or f"claim-cap-{args.dataset}", rows, {**meta, "acc_drop": args.acc_drop})


if __name__ == "__main__":
    main()
