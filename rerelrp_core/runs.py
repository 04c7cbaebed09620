"""A run: how it was made, the trained state, and its metrics; saved and loaded safely.

On disk a run is a folder::

    run.json          format tag, version, configs, tasks, history (JSON only)
    metrics.json      the summary metrics (also what the CLI prints)
    model.safetensors model weights
    learner.safetensors method-specific tensors (ReReLRP: keep masks per task and layer, and the
                      relevance feature vectors its recognisers are trained on)
    snapshots.safetensors optional float16 weights after every task
    outcomes.safetensors what every test image got after every task (:mod:`~rerelrp_core.outcomes`;
                      runs saved before it existed have none)

Tensors are read with ``safetensors`` and everything else is JSON, so opening a run never executes
code from it. ReReLRP's recognisers are not stored: they are retrained, deterministically, from the
stored relevance features when a run is opened. Saving writes a temporary folder and renames it into
place, so an interrupted save never corrupts the previous version of the run.

The format has a version. Every change to what is stored bumps it and adds one migration step
(``MIGRATIONS[v]`` turns a version-v run into a version v+1 run); tests open a committed fixture
run of every older version (tests/fixtures/runs/).
"""
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import TrainConfig
from .data import SplitConfig
from .errors import UserError
from .learners import make_learner, preferred_device, resolve_device
from .metrics import summarise
from .models import build_model
from .outcomes import from_tensors, to_tensors
from .recognition import recognition_config
from .task_recognition import TaskRecogniser
from .tasks import TaskSpec

FORMAT = "rerelrp-run"
VERSION = 9
REQUIRED = {"format": str, "version": int, "config": dict, "split": dict, "dataset": str, "class_names": list,
            "input_shape": list, "tasks": list, "history": dict}


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
    tasks: list                 # TaskSpec of every task of the sequence
    learner: object
    history: dict = field(default_factory=_empty_history)
    metrics: dict = field(default_factory=dict)
    snapshots: list = field(default_factory=list)   # float16 weights after each task (optional)
    # per step, per seen task: every test image's outcomes (:mod:`~rerelrp_core.outcomes`)
    outcomes: list = field(default_factory=list)
    device_note: str = None     # why the run opened on another device than it was trained on
    # where the network came from: its model string, the weights file it started from and the
    # SHA-256 of that file and of a user's model file (:func:`architecture_record`)
    architecture: dict = None

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
        metrics = {"config": self.config.to_dict(), "split": vars(self.split), "dataset": self.dataset,
                   "method": self.config.method, "tasks_done": self.tasks_done}
        metrics.update(summarise(self.history["acc_taw"], "taw"))
        metrics.update(summarise(self.history["acc_tag"], "tag"))
        learner_metrics = self.learner.metrics()
        metrics["timing_s"] = {**learner_metrics.pop("timing_s"),
                               "evaluate": round(self.history["evaluate_s"], 3)}
        metrics.update({key: learner_metrics.pop(key)
                        for key in ("stored_bytes_per_task", "stored_parts_per_task")})
        metrics["capacity"] = self.history["capacity"]
        confusion = self.history.get("task_confusion")
        if confusion:
            metrics["task_confusion"] = confusion
            metrics["task_recognition_acc"] = round(100.0 * sum(
                row[k] / max(1, sum(row)) for k, row in enumerate(confusion)) / len(confusion), 4)
        metrics.update(learner_metrics)
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
             "tasks": [task.to_dict() for task in run.tasks], "history": run.history,
             "learner": learner.json_state(),
             "architecture": run.architecture or architecture_record(run.config)}
    (tmp / "run.json").write_text(json.dumps(state, indent=1))
    (tmp / "metrics.json").write_text(json.dumps(run.update_metrics(), indent=1))
    save_file({k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()},
              str(tmp / "model.safetensors"))
    tensors = {k: v.detach().cpu().contiguous() for k, v in learner.tensor_state().items()}
    save_file(tensors, str(tmp / "learner.safetensors"))
    if run.snapshots:
        save_file({f"step{t}.{k}": v.contiguous()
                   for t, snap in enumerate(run.snapshots) for k, v in snap.items()},
                  str(tmp / "snapshots.safetensors"))
    if run.outcomes:
        save_file(to_tensors(run.outcomes), str(tmp / "outcomes.safetensors"))
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
        tensors = load_file(str(folder / "learner.safetensors"))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"{folder}: learner.safetensors is missing or damaged ({error}).") from None
    try:
        saved_as = state["version"]
        state, tensors = migrate(state, tensors)
        config = TrainConfig.from_dict(state["config"])
        split = SplitConfig(**state["split"])
        tasks = [TaskSpec.from_dict(t) for t in state["tasks"]]
    except (TypeError, AttributeError, KeyError, UserError) as error:
        raise UserError(f"{folder}: run.json has invalid settings ({error}).") from None
    n_done = len(state["history"]["acc_taw"])
    _check_layout(folder, tasks)
    model = _rebuild_model(folder, config, state["input_shape"], sum(t.n_classes for t in tasks))
    try:
        weights = load_file(str(folder / "model.safetensors"))
        model.load_state_dict(renamed_weights(weights, model, saved_as), strict=True)
    except FileNotFoundError:
        raise UserError(f"{folder} has no model.safetensors; the run is incomplete.") from None
    except (RuntimeError, OSError, ValueError, SafetensorError) as error:
        raise UserError(f"{folder}: model.safetensors is damaged or does not fit a '{config.arch}' model "
                        f"for this run ({str(error).splitlines()[0][:200]}).") from None
    # asked for now: it must exist; else the device it was trained with, or the CPU where that is missing
    if device is None:
        device, note = preferred_device(config.device)
    else:
        device, note = resolve_device(str(device)), None
    learner = make_learner(model, config, device)
    try:
        learner.load_json_state(state.get("learner") or {}, tasks)
        if len(learner.tasks) != n_done:
            raise UserError(f"the learner has seen {len(learner.tasks)} tasks but the history holds {n_done}")
        learner.load_tensor_state(tensors, n_done)
    except UserError as error:
        raise UserError(f"{folder}: {error}.") from None
    run = Run(config, split, state["dataset"], state["class_names"], state["input_shape"], tasks,
              learner, state["history"], snapshots=_load_snapshots(folder, model, n_done, saved_as),
              device_note=note, architecture=state["architecture"], outcomes=_load_outcomes(folder, n_done))
    if run.tasks_done:
        run.update_metrics()
    return run


def architecture_record(config):
    """What a run records of its network's origin: the model string (built-in name,
    ``torchvision:NAME`` or ``PATH.py:FUNCTION``), the weights file, and SHA-256 digests of that file
    and of the model's source file (None where there is none)."""
    from .architectures import source_digest, weights_digest
    weights = config.weights
    return {"model": config.arch, "weights": weights, "input_size": config.input_size,
            "weights_sha256": weights_digest(weights) if weights and Path(weights).is_file() else None,
            "source_sha256": source_digest(config.arch)}


def _rebuild_model(folder, config, input_shape, n_classes):
    """The run's network, untrained (its weights come from model.safetensors): a model from a
    user's file needs that file on this machine."""
    try:
        return build_model(config.arch, input_shape, n_classes, input_size=config.input_size)
    except UserError as error:
        raise UserError(f"{folder}: this run's model ({config.arch}) cannot be built here: {error}") from None


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
    if state["version"] < 1:
        raise UserError(f"{folder}/run.json has an unknown format version ({state['version']}).")
    if state["version"] > VERSION:
        raise UserError(f"{folder} was saved by a newer version (run format {state['version']}, this "
                        f"program reads up to {VERSION}); update rerelrp_core.")
    return state


def _check_layout(folder, tasks):
    """Tasks numbered 0, 1, ... in order, each starting where the previous one ends."""
    offset = 0
    for position, task in enumerate(tasks):
        if task.index != position or task.offset != offset:
            raise UserError(f"{folder}/run.json: task {position} has index {task.index} and offset "
                            f"{task.offset}; expected {position} and {offset}.")
        offset += task.n_classes


def migrate(state, tensors):
    """Bring a run (its run.json ``state`` and its learner tensors) up to the current VERSION, one
    step per version."""
    while state["version"] < VERSION:
        state, tensors = MIGRATIONS[state["version"]](dict(state), dict(tensors))
    return state, tensors


def _version1_to_2(state, tensors):
    """Version 2: the learner saves what it has seen and its timing itself (version 1 kept ``heads``
    and ``timing`` at the top level of run.json), and a ReReLRP run always holds, for every stored
    relevance block, its column indices and, per recogniser, its selected columns (version-1 runs
    written before column-only storage held every unit's value and no selection: the selection is
    made now from those full vectors, exactly as it was made when the run was trained)."""
    heads, timing = state.pop("heads", None), state.pop("timing", None)
    if not isinstance(heads, list) or not isinstance(timing, dict):
        raise UserError("a version-1 run.json needs its 'heads' list and 'timing'")
    offsets = [[t.get("offset"), len(t.get("classes", []))] for t in state["tasks"][:len(heads)]]
    if [list(h) for h in heads] != offsets:
        raise UserError("the version-1 'heads' do not match the run's tasks")
    state["learner"] = {**(state.get("learner") or {}), "tasks_seen": len(heads), "timing": timing}
    state["version"] = 2
    if (any(name.startswith("features.") for name in tensors)
            and not any(n.startswith("columns.") for n in tensors)):
        _select_from_full_vectors(state, tensors, len(heads))
    return state, tensors


def _select_from_full_vectors(state, tensors, n_tasks):
    layers = 0
    while f"mask.task0.layer{layers}" in tensors:
        layers += 1
    units = sum(len(tensors[f"mask.task0.layer{i}"]) for i in range(layers))
    recogniser = TaskRecogniser(recognition_config(state["config"].get("recognition", {})), units, 0)
    every = torch.arange(units)
    for m in range(n_tasks):
        for t in range(m, n_tasks):
            values, logits = tensors.get(f"features.m{m}.t{t}"), tensors.get(f"logits.m{m}.t{t}")
            if values is None or logits is None or values.shape[-1] != units:
                raise UserError(f"the relevance features of task {t} through subnetwork {m} are missing or "
                                "have the wrong shape")
            recogniser.features[(m, t)] = (values, logits, every)
            tensors[f"columns.m{m}.t{t}"] = every
    for r in range(n_tasks):
        tensors[f"selected.r{r}"] = torch.from_numpy(recogniser.choose_columns(r))


def _version2_to_3(state, tensors):
    """Version 3: task recognition has a ``kind``, and its default became class Gaussians. Runs
    saved before were recognised by the relevance forests, which they now name."""
    config = dict(state["config"])
    if config.get("method") == "rerelrp":
        recognition = config.get("recognition")
        if not isinstance(recognition, dict):
            raise UserError("a version-2 run.json needs its recognition settings as a dict")
        config["recognition"] = {"kind": "forest", **recognition}
    state["config"] = config
    state["version"] = 3
    return state, tensors


def _version3_to_4(state, tensors):
    """Version 4: a task may freeze at most ``max_claim_fraction`` of each layer's free units. Runs
    saved before had no such cap, which 1 keeps (so a resumed run goes on as it began)."""
    state["config"] = {**state["config"], "max_claim_fraction": 1.0}
    state["version"] = 4
    return state, tensors


def _version4_to_5(state, tensors):
    """Version 5: class-Gaussian recognition keeps up to 4 Gaussians per class (k-means clusters),
    int8 eigenvectors with a scale each, in a finer, projected space. Runs saved before kept one
    Gaussian per class with float16 vectors (scale 1) in the unprojected 2 x 2 grid space, which
    their settings now name."""
    config = state["config"]
    recognition = config.get("recognition")
    if config.get("method") == "rerelrp" and isinstance(recognition, dict) \
            and recognition.get("kind", "gaussian") == "gaussian":
        state["config"] = {**config, "recognition": {"first_grid": 2, "width": 0, "components": 1,
                                                     **recognition}}
        for name in [n for n in tensors if n.startswith("gaussians.vectors.t") and tensors[n].dim() == 3]:
            t = name.rsplit(".t", 1)[1]
            clusters, _, rank = tensors[name].shape
            tensors[f"gaussians.scales.t{t}"] = torch.ones(clusters, rank)
            tensors[f"gaussians.classes.t{t}"] = torch.arange(clusters)
    state["version"] = 5
    return state, tensors


def _version5_to_6(state, tensors):
    """Version 6: class-Gaussian recognition adds each cluster's volume to its distance. Runs saved
    before did not, which volume 0 names (so they predict as they did)."""
    config = state["config"]
    recognition = config.get("recognition")
    if config.get("method") == "rerelrp" and isinstance(recognition, dict) \
            and recognition.get("kind", "gaussian") == "gaussian":
        state["config"] = {**config, "recognition": {"volume": 0.0, **recognition}}
    state["version"] = 6
    return state, tensors


def _version6_to_7(state, tensors):
    """Version 7: a run records where its network came from (any image classifier can be adapted
    now). Older runs used a built-in network, from random weights."""
    arch = state["config"].get("arch", "cnn")
    state["architecture"] = {"model": arch, "weights": None, "input_size": None, "weights_sha256": None,
                             "source_sha256": None}
    state["version"] = 7
    return state, tensors


def _version7_to_8(state, tensors):
    """Version 8: the built-in networks are plain modules adapted like any other, so their weights
    have other names (see :func:`renamed_weights`) and the built-in ResNet-18's downsampling unit
    layers are named by their convolution's path (``layer2.0.downsample.0``)."""
    if state["config"].get("arch") == "resnet18":
        state["history"] = {**state["history"], "capacity": [
            {_DOWNSAMPLE.sub(r"\1.0", name): free for name, free in step.items()}
            for step in state["history"].get("capacity", [])]}
    state["version"] = 8
    return state, tensors


def _version8_to_9(state, tensors):
    """Version 9: class-Gaussian recognition lives in the input space by default, and the claim cap
    stands while it costs at most 1 point beyond acc_drop. Runs saved before kept their statistics
    in task 0's subnetwork, which ``space`` now names, and gave way at once (tolerance 0, so a resumed
    run goes on as it began)."""
    config = {"claim_cap_tolerance": 0.0, **state["config"]}
    state["config"] = config
    recognition = config.get("recognition")
    if config.get("method") == "rerelrp" and isinstance(recognition, dict) \
            and recognition.get("kind", "gaussian") == "gaussian":
        state["config"] = {**config, "recognition": {"space": "subnetwork", **recognition}}
    state["version"] = 9
    return state, tensors


_DOWNSAMPLE = re.compile(r"^(layer\d\.\d\.downsample)$")
_RESNET_WRAPPER = re.compile(r"(^|\.)(bn\d|downsample\.1)\.0\.")


def renamed_weights(weights, model, saved_as):
    """A built-in network's weights as a run saved before version 8 named them, under today's
    names: the modules that held its masks are gone (``backbone.0.weight`` of the default CNN is
    ``backbone.module.conv1.weight`` now; the ResNet's ``bn1.0.`` is ``bn1.``)."""
    if saved_as >= 8 or model.arch not in ("cnn", "cnn-small", "vgg11", "resnet18"):
        return weights
    if model.arch == "resnet18":
        return {("backbone.module." + _RESNET_WRAPPER.sub(r"\1\2.", k[len("backbone.resnet."):])
                 if k.startswith("backbone.resnet.") else k): v for k, v in weights.items()}
    names = {module: name for name, module in model.named_modules()}
    paths = [names[layer.producers[0]] for layer in model.unit_layers]
    old = [k for k in weights if k.split(".")[0] == "backbone" and k.split(".")[1].isdigit()]
    indices = sorted({int(k.split(".")[1]) for k in old})
    if len(indices) != len(paths):
        return weights          # not the old layout: loading names any mismatch
    path_of = dict(zip(indices, paths))
    return {(f"{path_of[int(k.split('.')[1])]}.{k.split('.', 2)[2]}" if k in old else k): v
            for k, v in weights.items()}


MIGRATIONS = {1: _version1_to_2, 2: _version2_to_3, 3: _version3_to_4, 4: _version4_to_5, 5: _version5_to_6,
              6: _version6_to_7, 7: _version7_to_8, 8: _version8_to_9}


def _load_outcomes(folder, n_steps):
    """The per-image outcomes of every step, if the run kept them (runs saved before did not)."""
    path = folder / "outcomes.safetensors"
    if not path.exists():
        return []
    try:
        outcomes = from_tensors(load_file(str(path)), n_steps)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"{folder}: outcomes.safetensors is damaged ({error}).") from None
    if outcomes is None:
        raise UserError(f"{folder}: outcomes.safetensors does not hold every step of the run.")
    return outcomes


def _load_snapshots(folder, model, n_tasks, saved_as=VERSION):
    """The per-task weight snapshots, if the run kept them (checked against the model's keys)."""
    path = folder / "snapshots.safetensors"
    if not path.exists():
        return []
    try:
        tensors = load_file(str(path))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"{folder}: snapshots.safetensors is damaged ({error}).") from None
    keys = model.state_dict().keys()
    steps = [{k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"step{t}.")}
             for t in range(n_tasks)]
    snapshots = [{k: step.get(k) for k in keys}
                 for step in (renamed_weights(step, model, saved_as) for step in steps)]
    if any(v is None for snap in snapshots for v in snap.values()):
        raise UserError(f"{folder}: snapshots.safetensors does not match the run's model.")
    return snapshots
