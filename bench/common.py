"""Helpers shared by the benchmark scripts: machine description and result files."""
import csv
import functools
import json
import os
import platform
import time
from pathlib import Path

import torch

from rerelrp_core.data import SplitConfig, load_dataset
from rerelrp_core.errors import UserError
from rerelrp_core.learners import resolve_device
from rerelrp_core.sequence import train_sequence

RESULTS = Path(__file__).parent / "results"


def machine(device):
    """What every printed figure must come with: device, torch threads, load average."""
    return {"device": str(device),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads(), "loadavg": [round(v, 2) for v in os.getloadavg()],
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__}


def write_results(name, rows, meta):
    """bench/results/NAME.json (rows + machine) and NAME.csv (rows)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": meta, "rows": rows}, indent=1))
    if rows:
        with open(RESULTS / f"{name}.csv", "w", newline="") as handle:
            # rows may differ (an error row, a method without capacity): one column per key seen
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
    print(f"written: {RESULTS / name}.json, .csv")


@functools.cache
def dataset_named(name):
    """The data set, read once for all the runs scored on it."""
    return load_dataset(name)


def open_dataset(name):
    """Load data set ``name`` and print the machine figures come from; returns (dataset, machine)."""
    dataset = load_dataset(name)
    meta = machine(resolve_device("auto"))
    print(meta)
    return dataset, meta


def timed_sequence(dataset, n_tasks, config, **options):
    """Train one whole sequence; returns (run, seconds), or (None, message) when training fails
    (e.g. a diverging baseline) so that a benchmark reports it and goes on."""
    started = time.perf_counter()
    try:
        run = train_sequence(dataset, SplitConfig(n_tasks=n_tasks, seed=config.seed), config, **options)
    except UserError as error:
        print(f"{config.method} seed {config.seed}: {error}", flush=True)
        return None, str(error)
    return run, time.perf_counter() - started


def accuracies(learner, tasks, part):
    """Average TAw and overall TAg (%) over ``tasks`` on their ``part`` images (val or test)."""
    xs = [getattr(t, f"x_{part}") for t in tasks]
    ys = [getattr(t, f"y_{part}") for t in tasks]
    taw = [float((learner.predict_taw(x, t.index) == y).float().mean()) for x, y, t in zip(xs, ys, tasks)]
    tag = learner.predict_tag(torch.cat(xs)) == torch.cat([y + t.offset for y, t in zip(ys, tasks)])
    return 100 * sum(taw) / len(taw), 100 * float(tag.float().mean())
