"""Sweeps on Ray: every (method, seed, settings) combination of a data set as one Ray task.

Each run writes its own folder under the sweep's folder and a checkpoint after every task, so a
sweep run again skips finished runs and resumes interrupted ones. Ray is local by default; an
``address`` joins an existing cluster (every machine needs this package and the data set). Torch
threads per run follow ``cpus_per_run``. ``summary.csv`` and ``summary.json`` get one row per run.
"""
import csv
import hashlib
import itertools
import json
import re
import time
from pathlib import Path

from tqdm import tqdm

from .colour_sets import default_split
from .config import make_config
from .data import SplitConfig
from .errors import UserError

# settings of the task split rather than of training (``class_order=3-1-4-0-2-5-6-7-8-9,...``: class
# ids in the order tasks receive them, dash-separated, one order per comma-separated value)
SPLIT_SETTINGS = ("class_order",)


def class_order(value):
    """A class order setting (a list of class ids, or the same dash-separated) as a list of ints."""
    parts = value.split("-") if isinstance(value, str) else value
    try:
        return [int(c) for c in parts]
    except (TypeError, ValueError):
        raise UserError(f"class_order takes class ids separated by '-', e.g. 3-1-4-0-2; got {value!r}.") \
            from None


def parse_settings(items):
    """``["lr=0.01,0.05", "acc_drop=1"]`` -> {"lr": [0.01, 0.05], "acc_drop": [1.0]} (numbers where
    they parse, else text)."""
    settings = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise UserError(f"--set takes key=value[,value...]; got {item!r}.")
        settings[key.strip().replace("-", "_")] = [parse_value(v.strip()) for v in values.split(",")]
    return settings


def parse_value(text):
    """A setting typed on a command line: an int, a float, true/false, or the text itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def plan(dataset, methods, seeds, n_tasks, settings):
    """Every run of the sweep as a dict (dataset, method, seed, tasks, classes_per_task, settings,
    name); ``n_tasks`` None takes the paper's split of its data sets, else 5 tasks. Each
    combination's settings are checked here, before anything starts. The name holds everything
    that makes a run, so a sweep into the same folder with other settings never mistakes one run
    for another."""
    for clash in ("method", "seed"):
        if clash in settings:
            raise UserError(f"--set cannot set {clash}: use --{clash}s.")
    n_tasks, sizes = default_split(dataset, n_tasks)
    keys, runs = list(settings), []
    for method, seed, values in itertools.product(dict.fromkeys(methods), dict.fromkeys(seeds),
                                                  itertools.product(*settings.values())):
        chosen = dict(zip(keys, values))
        if "class_order" in chosen:
            chosen["class_order"] = class_order(chosen["class_order"])
        make_config(method=method, seed=seed, **training_settings(chosen))  # a bad value stops it now
        label = "".join(f"-{k}{_short(v)}" for k, v in chosen.items())
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{dataset}-{n_tasks}tasks-{method}-seed{seed}{label}")
        runs.append({"dataset": dataset, "method": method, "seed": seed, "tasks": n_tasks,
                     "classes_per_task": sizes, "settings": chosen, "name": name})
    return runs


def training_settings(settings):
    """The settings that go into the training config (not the split's)."""
    return {k: v for k, v in settings.items() if k not in SPLIT_SETTINGS}


def _short(value):
    """A setting's value as it appears in a run name (a dict, e.g. recognition overrides, as a hash;
    a class order as its ids joined by dots)."""
    if isinstance(value, list):
        return ".".join(map(str, value))
    if isinstance(value, dict):
        return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
    return value


def train_one(job, out, data_dir=None, threads=1):
    """Train (or finish, or just read) one run of the sweep in ``out/job['name']``; its summary row."""
    import functools

    import torch

    from .data import load_dataset
    from .runs import load_run, save_run
    from .sequence import train_sequence
    torch.set_num_threads(threads)
    folder = Path(out) / job["name"]
    previous = load_run(folder) if (folder / "run.json").exists() else None     # on its own device
    started = time.perf_counter()
    if previous is None or previous.tasks_done < previous.split.n_tasks:
        config = make_config(method=job["method"], seed=job["seed"], **training_settings(job["settings"]))
        split = previous.split if previous else SplitConfig(n_tasks=job["tasks"], seed=job["seed"],
                                                             classes_per_task=job["classes_per_task"],
                                                             class_order=job["settings"].get("class_order"))
        dataset = load_dataset(job["dataset"], data_dir=data_dir)
        started = time.perf_counter()                 # the run's own time, as bench scripts report it
        run = train_sequence(dataset, split, previous.config if previous else config,
                             on_task_end=functools.partial(save_run, out=folder), run=previous)
        state = "resumed" if previous else "trained"
    else:
        run, state = previous, "skipped (finished before)"
    m = run.metrics
    # acc_drop is always shown: its default depends on the recognition kind (0.25 or the paper's 1)
    return {"name": job["name"], "method": job["method"], "seed": job["seed"],
            "acc_drop": run.config.acc_drop, **job["settings"],
            "final_taw": m["avg_acc_taw"][-1], "final_tag": m["avg_acc_tag"][-1],
            "forgetting_taw": m["forgetting_taw"], "forgetting_tag": m["forgetting_tag"],
            "task_recognition_acc": m.get("task_recognition_acc"),
            "stored_bytes": sum(m["stored_bytes_per_task"]), "train_s": m["timing_s"]["train"],
            "consolidate_s": m["timing_s"]["consolidate"], "evaluate_s": m["timing_s"]["evaluate"],
            "run_s": round(time.perf_counter() - started, 1), "state": state, "folder": str(folder)}


def run_sweep(runs, out, address=None, cpus_per_run=1, gpus_per_run=0, data_dir=None, quiet=False):
    """Every run as a Ray task; returns the summary rows (also written to ``out/summary.csv|json``)."""
    import ray
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(train_one)
        threads = max(1, int(cpus_per_run))
        jobs = {task.remote(job, str(out.resolve()), data_dir, threads): job for job in runs}
        pending, rows = list(jobs), []
        with tqdm(total=len(pending), desc="runs", disable=quiet) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    rows.append(ray.get(done[0]))
                except ray.exceptions.RayTaskError as error:     # one failed run: say which, go on
                    job = jobs[done[0]]
                    rows.append({"name": job["name"], "method": job["method"], "seed": job["seed"],
                                 **job["settings"], "error": str(error).strip().splitlines()[-1][:500]})
                bar.update(1)
                write_summary(out, rows)
    finally:
        ray.shutdown()
    return rows


def write_summary(out, rows):
    """``out/summary.json`` and ``summary.csv``: one row per finished run, in order of names."""
    rows = sorted(rows, key=lambda r: r.get("name", ""))
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
