"""Forgetting page speed and what per-image outcomes cost, measured server-side.

    .venv/bin/python bench/forgetting_view.py [--clicks 5] [--train-epochs 2]

For the demo runs (ReReLRP, fine-tuning; MNIST-5k, 1,000 test images) and the Fashion-MNIST demo
run (10,000 test images): the first time a run's outcomes are asked for (computed once for runs
saved before outcomes were kept), one matrix-cell trace in the engine (``cell_trace``), and the
whole Forgetting page script after a click on a matrix cell (AppTest runs the real page in this
process, caches warm; each click goes to another cell), median and max over ``--clicks`` cells.
Target (issue "Debug forgetting"): a cell click -> its grid <= 1 s server-side.

Then a fresh Split Fashion-MNIST ReReLRP run (``--train-epochs`` per task): the bytes its outcomes
take per step and per run, and the time spent building them against the whole evaluation.
Prints the machine (device, torch threads, load average) with the figures.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamlit.testing.v1 import AppTest  # noqa: E402

import rerelrp_core  # noqa: E402,F401
import rerelrp_core.evaluation as evaluation  # noqa: E402
from rerelrp_core.config import make_config  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks  # noqa: E402
from rerelrp_core.forgetting import cell_trace, traced_outcomes  # noqa: E402
from rerelrp_core.outcomes import nbytes  # noqa: E402
from rerelrp_core.runs import load_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402

from common import machine, write_results  # noqa: E402

DEMOS = ROOT / "assets" / "demo-runs"


def timed(action):
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


def cells(run, n):
    """``n`` task-agnostic cells below the diagonal, spread over the matrix."""
    below = [(s, t) for s in range(run.tasks_done) for t in range(s)]
    return [below[round(i * (len(below) - 1) / max(1, n - 1))] for i in range(n)]


def page_clicks(name, run, n):
    """Seconds of the Forgetting page script after each click on a matrix cell."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["run_path"] = str(DEMOS / name)
    at.switch_page("views/forgetting.py")
    at.run()
    times = []
    for step, task in cells(run, n):
        point = {"curve_number": 1, "point_number": 0, "point_index": 0, "customdata": [step, task]}
        at.session_state["matrix-tag"] = {"selection": {"points": [point], "point_indices": [0], "box": [],
                                                        "lasso": []}}
        _, seconds = timed(at.run)
        if at.exception:
            raise RuntimeError(at.exception[0].value)
        times.append(seconds)
    return times


def demo_rows(clicks):
    rows = []
    for name in ("rerelrp", "finetune", "fashion-rerelrp"):
        run = load_run(DEMOS / name, device="cpu")
        tasks = make_tasks(load_dataset(run.dataset), run.split)
        (outcomes, note), first = timed(lambda: traced_outcomes(run, tasks))
        traces = [timed(lambda: cell_trace(run, outcomes, tasks, s, t, "tag"))[1]
                  for s, t in cells(run, clicks)]
        page = page_clicks(name, run, clicks)
        row = {"run": f"demo {name}", "test images": sum(len(t.y_test) for t in tasks),
               "outcomes first asked (s)": round(first, 3), "how": note or "recorded",
               "cell trace median (s)": round(statistics.median(traces), 4),
               "page after a cell click median (s)": round(statistics.median(page), 3),
               "page after a cell click max (s)": round(max(page), 3)}
        print(row, flush=True)
        rows.append(row)
    return rows


def fresh_run_row(epochs):
    """A fresh Split Fashion-MNIST ReReLRP run: outcome bytes, and outcome building against evaluation."""
    building = []
    real = evaluation.image_outcomes

    def counted(*args):
        value, seconds = timed(lambda: real(*args))
        building.append(seconds)
        return value

    evaluation.image_outcomes = counted
    try:
        config = make_config(method="rerelrp", arch="cnn-small", epochs=epochs, seed=0, device="cpu")
        dataset = load_dataset("fashion-mnist")
        run, seconds = timed(lambda: train_sequence(dataset, SplitConfig(n_tasks=5, seed=0), config))
    finally:
        evaluation.image_outcomes = real
    per_step = [nbytes([step]) for step in run.outcomes]
    images = sum(len(seen["taw"]) for step in run.outcomes for seen in step)
    row = {"run": f"fresh fashion-mnist rerelrp ({epochs} epochs/task)",
           "train+evaluate (s)": round(seconds, 1),
           "outcome bytes per step": per_step, "outcome bytes per run": sum(per_step),
           "bytes per image and step": sum(per_step) / images,
           "building outcomes (s)": round(sum(building), 3),
           "whole evaluation (s)": round(run.history["evaluate_s"], 3)}
    print(row, flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--train-epochs", type=int, default=2)
    args = parser.parse_args()
    meta = machine("cpu")
    print(meta)
    rows = demo_rows(args.clicks)
    if args.train_epochs:
        rows.append(fresh_run_row(args.train_epochs))
    write_results("forgetting-view", rows, {**meta, "loadavg_end": machine("cpu")["loadavg"]})


if __name__ == "__main__":
    main()
