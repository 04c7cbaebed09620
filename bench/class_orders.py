"""Task recognition on class orders nobody tuned on: ReReLRP and plain replay (2,000 images) on the
same shuffled class orders of Split Fashion-MNIST 5x2, through the Ray sweep (the class order is a
sweep setting). Prints per order both methods' final TAg and TAw, ReReLRP's task recognition, its
worst task (task-agnostic) and the gap to replay.

    .venv/bin/python bench/class_orders.py [--orders 6] [--seeds 0] [--methods rerelrp replay]
    .venv/bin/python bench/class_orders.py --order-seed 31 --orders 3 --methods rerelrp \
        --set claim_cap_tolerance=0,1 --validation          # choosing: other orders, validation images

The orders are drawn once from a fixed generator (``ORDER_SEED``) before any run, so every
session measures the same ones; ``--save-runs`` keeps the run folders (a finished run there is not
trained again).
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.data import make_tasks  # noqa: E402
from rerelrp_core.learners import resolve_device  # noqa: E402
from rerelrp_core.runs import load_run  # noqa: E402
from rerelrp_core.sweep import parse_settings, plan, run_sweep  # noqa: E402

from common import accuracies, dataset_named, machine, write_results  # noqa: E402

ORDER_SEED = 30          # issue #30: the orders are fixed before anything is measured


def class_orders(n, n_classes=10, seed=ORDER_SEED):
    """``n`` shuffled class orders, the same in every session (another ``seed``: orders to choose
    settings on, never the ones reported)."""
    rng = np.random.default_rng(seed)
    return [[int(c) for c in rng.permutation(n_classes)] for _ in range(n)]


def validation_scores(folder):
    """Final TAw and TAg (%) of a saved run on its tasks' validation images: what a choice is made on."""
    run = load_run(folder, device="cpu")
    tasks = make_tasks(dataset_named(run.dataset), run.split)[:run.tasks_done]
    return accuracies(run.learner, tasks, "val")


def order_rows(summary, settings=(), validation=False):
    """One row per (order, seed, value of each of ``settings``): both methods side by side, ReReLRP's
    worst task and recognition."""
    by_key = {}
    for row in summary:
        if "error" in row:
            print("failed:", row["name"], row["error"], flush=True)
            continue
        metrics = json.loads((Path(row["folder"]) / "metrics.json").read_text())
        key = ("-".join(map(str, row["class_order"])), row["seed"], *(str(row.get(s)) for s in settings))
        by_key.setdefault(key, {})[row["method"]] = (row, metrics)
    rows = []
    for (order, seed, *values), methods in sorted(by_key.items()):
        entry = {"class order": order, "seed": seed, **dict(zip(settings, values))}
        for method, (row, metrics) in sorted(methods.items()):
            if validation:
                val_taw, val_tag = validation_scores(row["folder"])
                entry[f"{method} val TAg"], entry[f"{method} val TAw"] = round(val_tag, 2), round(val_taw, 2)
            entry[f"{method} TAg"] = round(row["final_tag"], 2)
            entry[f"{method} TAw"] = round(row["final_taw"], 2)
            last = metrics["acc_tag"][-1]
            worst = int(np.argmin(last))
            entry[f"{method} worst task"] = f"{worst} ({last[worst]:.1f})"
            if row.get("task_recognition_acc") is not None:
                entry[f"{method} recognition"] = round(row["task_recognition_acc"], 2)
        if "rerelrp TAg" in entry and "replay TAg" in entry:
            entry["rerelrp - replay"] = round(entry["rerelrp TAg"] - entry["replay TAg"], 2)
        rows.append(entry)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=["rerelrp", "replay"])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--cpus-per-run", type=float, default=1, help="two runs at once on 2 cores")
    parser.add_argument("--save-runs", help="folder to keep the runs in")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="training settings for every run (a value list makes a grid, as in the sweep)")
    parser.add_argument("--only", type=int, nargs="+", help="run only these orders (0-based)")
    parser.add_argument("--validation", action="store_true",
                        help="also each run's final TAg and TAw on validation images (to choose on)")
    parser.add_argument("--order-seed", type=int, default=ORDER_SEED,
                        help=f"generator of the orders (default {ORDER_SEED}, the reported ones)")
    args = parser.parse_args()
    meta = machine(resolve_device("auto"))
    print(meta, flush=True)
    orders = class_orders(args.orders, seed=args.order_seed)
    chosen = [orders[i] for i in args.only] if args.only else orders
    settings = {**parse_settings(args.set), "class_order": chosen}
    runs = plan(args.dataset, args.methods, args.seeds, 5, settings)
    # both methods of one order run together, so an order's comparison is complete early
    runs.sort(key=lambda run: (orders.index(run["settings"]["class_order"]), run["seed"], run["method"]))
    folder = Path(args.save_runs) if args.save_runs else Path(tempfile.mkdtemp(prefix="class-orders-"))
    grid = [name for name in settings if name != "class_order"]
    rows = order_rows(run_sweep(runs, folder, cpus_per_run=args.cpus_per_run, quiet=True), grid,
                      validation=args.validation)
    for row in rows:
        print(row, flush=True)
    gaps = [r["rerelrp - replay"] for r in rows if "rerelrp - replay" in r]
    if gaps:
        print(f"ReReLRP - replay over {len(gaps)} orders: mean {statistics.mean(gaps):+.2f}, "
              f"worst {min(gaps):+.2f}, orders at or above replay: {sum(g >= 0 for g in gaps)}")
    seed_part = [] if args.order_seed == ORDER_SEED else [f"order_seed{args.order_seed}"]
    name = "-".join([f"class-orders-{args.dataset}", *seed_part, *sorted(args.set)]).replace("=", "")
    write_results(name, rows, {**meta, "orders": chosen, "seeds": args.seeds, "settings": args.set})


if __name__ == "__main__":
    main()
