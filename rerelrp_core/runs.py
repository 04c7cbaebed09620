"""A run: how it was made, the trained state, and its metrics; saved and loaded safely.

On disk a run is a folder::

    run.json          format tag, version, configs, tasks, history (JSON only)
    metrics.json      the summary metrics (also what the CLI prints)
    model.safetensors model weights
    learner.safetensors method-specific tensors (ReReLRP: keep masks per task and layer, and the
                      relevance feature vectors its recognisers are trained on)
    snapshots.safetensors optional float16 weights after every task

Tensors are read with ``safetensors`` and everything else is JSON, so opening a run never executes
code from it. ReReLRP's recognisers are not stored: they are retrained, deterministically, from the
stored relevance features when a run is opened. Saving writes a temporary folder and renames it into place, so an interrupted save
never corrupts the previous version of the run.
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data import SplitConfig
from .errors import UserError
from .learner import TrainConfig
from .methods import make_learner
from .metrics import capacity_report, summarise
from .models import build_model

FORMAT = "rerelrp-run"
VERSION = 1
REQUIRED = {"format": str, "version": int, "config": dict, "split": dict, "dataset": str, "class_names": list,
            "input_shape": list, "tasks": list, "history": dict, "heads": list, "timing": dict}


def _empty_history():
    return {"acc_taw": [], "acc_tag": [], "capacity": [], "evaluate_s": 0.0}


@dataclass
class Run:
    """A (partly) trained task sequence: its settings, its learner and what was measured."""
    config: TrainConfig
    split: SplitConfig
    dataset: str
    class_names: list
    input_shape: list
    tasks: list                 # per task: index, classes, class_names, offset
    learner: object
    history: dict = field(default_factory=_empty_history)
    metrics: dict = field(default_factory=dict)
    snapshots: list = field(default_factory=list)   # float16 weights after each task (optional)

    @property
    def tasks_done(self):
        return len(self.history["acc_taw"])

    @property
    def model(self):
        return self.learner.model

    @property
    def layer_names(self):
        return [layer.name for layer in self.model.unit_layers]

    def update_metrics(self):
        """Recompute ``metrics`` (the metrics.json content) from the history and learner state."""
        learner = self.learner
        metrics = {"config": self.config.to_dict(), "split": vars(self.split), "dataset": self.dataset,
                   "method": self.config.method, "tasks_done": self.tasks_done}
        metrics.update(summarise(self.history["acc_taw"], "taw"))
        metrics.update(summarise(self.history["acc_tag"], "tag"))
        metrics["timing_s"] = {"train": round(learner.timing["train"], 3),
                               "consolidate": round(learner.timing["consolidate"], 3),
                               "evaluate": round(self.history["evaluate_s"], 3)}
        metrics["stored_bytes_per_task"] = [learner.stored_bytes(k) for k in range(len(learner.heads))]
        metrics["stored_parts_per_task"] = [learner.stored_parts(k) for k in range(len(learner.heads))]
        metrics["capacity"] = self.history["capacity"]
        confusion = self.history.get("task_confusion")
        if confusion:
            metrics["task_confusion"] = confusion
            metrics["task_recognition_acc"] = round(100.0 * sum(
                row[k] / max(1, sum(row)) for k, row in enumerate(confusion)) / len(confusion), 4)
        if hasattr(learner, "ownership"):
            metrics["units"] = capacity_report(learner.ownership, self.layer_names)
            metrics["pruning"] = learner.prune_log
        self.metrics = metrics
        return metrics


def save_run(run, out):
    """Write ``run`` to folder ``out`` atomically (temporary folder, then rename)."""
    out = Path(out)
    if out.exists() and not (out / "run.json").exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a run folder; choose another output folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    learner = run.learner
    state = {"format": FORMAT, "version": VERSION, "config": run.config.to_dict(), "split": vars(run.split),
             "dataset": run.dataset, "class_names": run.class_names, "input_shape": run.input_shape,
             "tasks": run.tasks, "history": run.history, "heads": [list(h) for h in learner.heads],
             "timing": learner.timing, "learner": learner.json_state()}
    (tmp / "run.json").write_text(json.dumps(state, indent=1))
    (tmp / "metrics.json").write_text(json.dumps(run.update_metrics(), indent=1))
    save_file({k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()},
              str(tmp / "model.safetensors"))
    tensors = {k: v.detach().cpu().contiguous() for k, v in learner.tensor_state().items()}
    save_file(tensors, str(tmp / "learner.safetensors"))
    if run.snapshots:
        save_file({f"step{t}.{k}": v.contiguous() for t, snap in enumerate(run.snapshots) for k, v in snap.items()},
                  str(tmp / "snapshots.safetensors"))
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def load_run(folder, device=None):
    """Open a saved run; every problem is reported as a UserError naming the folder."""
    folder = Path(folder)
    state = _read_state(folder)
    try:
        config = TrainConfig.from_dict(state["config"])
        split = SplitConfig(**state["split"])
    except (TypeError, UserError) as error:
        raise UserError(f"{folder}: run.json has invalid settings ({error}).") from None
    n_classes = sum(len(t["classes"]) for t in state["tasks"])
    model = build_model(config.arch, state["input_shape"], n_classes)
    try:
        weights = load_file(str(folder / "model.safetensors"))
        model.load_state_dict(weights, strict=True)
    except FileNotFoundError:
        raise UserError(f"{folder} has no model.safetensors; the run is incomplete.") from None
    except (RuntimeError, OSError, ValueError, SafetensorError) as error:
        raise UserError(f"{folder}: model.safetensors is damaged or does not fit a '{config.arch}' model for this run "
                        f"({str(error).splitlines()[0][:200]}).") from None
    if device is not None:
        config.device = str(device)
    learner = make_learner(model, config)
    learner.heads = [tuple(h) for h in state["heads"]]
    learner.timing = {k: float(v) for k, v in state["timing"].items()}
    learner.load_json_state(state.get("learner") or {})
    try:
        learner.load_tensor_state(load_file(str(folder / "learner.safetensors")), len(state["history"]["acc_taw"]))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"{folder}: learner.safetensors is missing or damaged ({error}).") from None
    run = Run(config, split, state["dataset"], state["class_names"], state["input_shape"], state["tasks"],
              learner, state["history"], snapshots=_load_snapshots(folder, model, len(state["history"]["acc_taw"])))
    if run.tasks_done:
        run.update_metrics()
    return run


def _read_state(folder):
    if not (folder / "run.json").is_file():
        raise UserError(f"{folder} is not a run folder (no run.json); train one with "
                        "`python -m rerelrp_core train --out FOLDER`.")
    try:
        state = json.loads((folder / "run.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{folder}/run.json is not valid JSON ({error}); the run file is damaged.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{folder}/run.json is not a ReReLRP run file.")
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise UserError(f"{folder}/run.json: field '{key}' is missing or not a {kind.__name__}.")
    if state["version"] > VERSION:
        raise UserError(f"{folder} was saved by a newer version (run format {state['version']}, this "
                        f"program reads up to {VERSION}); update rerelrp_core.")
    return state


def _load_snapshots(folder, model, n_tasks):
    """The per-task weight snapshots, if the run kept them (checked against the model's keys)."""
    path = folder / "snapshots.safetensors"
    if not path.exists():
        return []
    try:
        tensors = load_file(str(path))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"{folder}: snapshots.safetensors is damaged ({error}).") from None
    keys = model.state_dict().keys()
    snapshots = [{k: tensors.get(f"step{t}.{k}") for k in keys} for t in range(n_tasks)]
    if any(v is None for snap in snapshots for v in snap.values()):
        raise UserError(f"{folder}: snapshots.safetensors does not match the run's model.")
    return snapshots
