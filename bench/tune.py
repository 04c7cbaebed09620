"""Choose a baseline's regularisation strength on validation data only: every value trains the whole
sequence and is scored after the last task on the validation images of all tasks (never the test
split). Prints the table and the value with the best final average validation TAg (ties: TAw).

    .venv/bin/python bench/tune.py --dataset fashion-mnist --method ewc --values 500 5000 50000
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402

from common import open_dataset, timed_sequence, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--tasks", type=int, default=5)
    # not rerelrp: its pruning and recognisers use validation images, so they cannot score it
    parser.add_argument("--method", required=True, choices=["ewc", "lwf"], help="whose reg_strength to tune")
    parser.add_argument("--values", type=float, nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset, meta = open_dataset(args.dataset)
    rows = []
    for value in args.values:
        config = TrainConfig(method=args.method, seed=args.seed, reg_strength=value)
        run, outcome = timed_sequence(dataset, args.tasks, config, evaluate_on="validation")
        row = {"method": args.method, "reg_strength": value}
        rows.append({**row, "error": outcome} if run is None else
                    {**row, "val_avg_acc_tag": run.metrics["avg_acc_tag"][-1],
                     "val_avg_acc_taw": run.metrics["avg_acc_taw"][-1], "seconds": round(outcome, 1)})
        print(rows[-1], flush=True)
    scored = [r for r in rows if "error" not in r]
    print(f"\n{args.method} on {args.dataset} (seed {args.seed}), "
          "final average accuracy on validation images")
    for r in rows:
        print(f"  reg_strength {r['reg_strength']:>10g}: " + (r["error"] if "error" in r else
              f"TAg {r['val_avg_acc_tag']:6.2f}  TAw {r['val_avg_acc_taw']:6.2f}"))
    if scored:
        best = max(scored, key=lambda r: (r["val_avg_acc_tag"], r["val_avg_acc_taw"]))
        print(f"chosen: reg_strength {best['reg_strength']:g}")
    write_results(f"tune-{args.method}-{args.dataset}", rows, meta)


if __name__ == "__main__":
    main()
