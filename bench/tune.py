"""Choose a baseline's regularisation strength on validation data only: every value trains the whole
sequence and is scored after the last task on the validation images of all tasks (never the test
split). Prints the table and the value with the best final average validation TAg (ties: TAw).

    .venv/bin/python bench/tune.py --dataset fashion-mnist --method ewc --values 500 5000 50000
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.data import SplitConfig, load_dataset  # noqa: E402
from rerelrp_core.errors import UserError  # noqa: E402
from rerelrp_core.learner import TrainConfig, resolve_device  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402
from common import machine, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--method", required=True, help="ewc or lwf (their reg_strength is tuned)")
    parser.add_argument("--values", type=float, nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    meta = machine(resolve_device("auto"))
    print(meta)
    rows = []
    for value in args.values:
        config = TrainConfig(method=args.method, seed=args.seed, reg_strength=value)
        started = time.perf_counter()
        try:
            run = train_sequence(dataset, SplitConfig(n_tasks=args.tasks, seed=args.seed), config,
                                 evaluate_on="validation")
        except UserError as error:
            rows.append({"method": args.method, "reg_strength": value, "error": str(error)})
            print(rows[-1], flush=True)
            continue
        rows.append({"method": args.method, "reg_strength": value,
                     "val_avg_acc_tag": run.metrics["avg_acc_tag"][-1],
                     "val_avg_acc_taw": run.metrics["avg_acc_taw"][-1],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    scored = [r for r in rows if "error" not in r]
    print(f"\n{args.method} on {args.dataset} (seed {args.seed}), final average accuracy on validation images")
    for r in rows:
        print(f"  reg_strength {r['reg_strength']:>10g}: " + (r["error"] if "error" in r else
              f"TAg {r['val_avg_acc_tag']:6.2f}  TAw {r['val_avg_acc_taw']:6.2f}"))
    if scored:
        best = max(scored, key=lambda r: (r["val_avg_acc_tag"], r["val_avg_acc_taw"]))
        print(f"chosen: reg_strength {best['reg_strength']:g}")
    write_results(f"tune-{args.method}-{args.dataset}", rows, meta)


if __name__ == "__main__":
    main()
