"""The interface every continual learner shares: SGD training with early stopping, task-aware
prediction, and the capabilities each method declares.

Every learner is used the same way, task after task::

    learner.train_task(task)      # fit the task's data
    learner.consolidate(task)     # method-specific work after training (ReReLRP: LRP, prune, freeze)
    learner.predict_taw(x, k)     # class within task k, task label given (task-aware)
    learner.predict_tag(x)        # global class, task label unknown (task-agnostic)

A new method is one subclass, in a file of its own, that overrides the hooks it needs.
"""
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models import batched_logits, inference_batch
from ..subnetworks import subnetwork_pass
from .training import fit_task


def resolve_device(name="auto"):
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"Unknown device '{name}'. Use auto, cpu or cuda.")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was requested but no GPU is available; use --device cpu or auto.")
    _, colon, index = name.partition(":")
    if colon and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        count = torch.cuda.device_count()
        raise UserError(f"Device {name} was requested but this machine has {count} GPU(s) "
                        f"(cuda:0 to cuda:{count - 1}); use --device cuda, cuda:N or cpu.")
    return torch.device(name)


def preferred_device(name):
    """The device a saved run opens on: the one it was trained with (``name``) when this machine
    has it, else the CPU. Returns (device, note): the note says why it fell back, or is None."""
    try:
        return resolve_device(name), None
    except UserError:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return torch.device("cpu"), (f"This run was trained on {name}, which this machine does not have "
                                     f"({gpus} GPU(s) here): it opens on the CPU (--device chooses another).")


def accuracy(predicted, labels):
    return 100.0 * float((predicted.cpu() == labels.cpu()).float().mean()) if len(labels) else 0.0


def accuracy_of_count(correct, total):
    """What :func:`accuracy` gives for ``correct`` right answers out of ``total``, to the last bit
    (the mean of 0/1 floats depends only on how many are 1), so it bounds a partial count exactly."""
    return accuracy(torch.arange(total) < correct, torch.ones(total, dtype=torch.bool))


class Learner:
    """Shared machinery: the model, the tasks seen so far, SGD training with early stopping, and
    task-aware prediction. Subclasses decide what is trainable and what happens after a task.

    What a method can answer is declared here, not discovered with ``hasattr``:

    ownership: a :class:`~rerelrp_core.masks.UnitOwnership` (which task froze which unit), or None
        for methods without per-task masks.
    recogniser: a :class:`~rerelrp_core.task_recognition.TaskRecogniser` that tells an input's task
        from its relevance, or None for methods that do not recognise tasks.
    """

    method = None
    ownership = None
    recogniser = None
    augmentation = None     # (batch, seed) -> batch applied to training batches; set per sequence

    def __init__(self, model, config, device=None):
        self.model = model
        self.config = config
        self.device = device or resolve_device(config.device)
        self.model.to(self.device)
        self.tasks = []           # TaskSpec of every task seen so far
        self.timing = {"train": 0.0, "consolidate": 0.0}

    # -- hooks for subclasses -------------------------------------------------------------------
    def training_data(self, task):
        """(inputs, target output rows) to fit for ``task``."""
        return task.x_train, task.y_train + task.offset

    def loss_columns(self, task):
        """The output rows the cross-entropy of ``task`` runs over."""
        if self.config.loss_scope == "seen":
            return slice(0, task.offset + task.n_classes)
        return task.rows

    def before_task(self, task):
        """Preparation before ``task`` is trained; nothing by default."""

    def mix_batch(self, x, rows):
        """The batch actually trained on, from a batch of the task's data; unchanged by default
        (replay adds stored images)."""
        return x, rows

    def loss(self, x, rows, logits, columns):
        """Training loss of a batch: cross-entropy over the output rows ``columns``."""
        return F.cross_entropy(logits[:, columns], rows - columns.start)

    def resume(self, finished_tasks):
        """Rebuild what a saved run does not hold before training continues; nothing by default."""

    def freezer(self, task):
        """A Freezer for parameters that must not change while training ``task``, or None."""
        return None

    def consolidate(self, task, progress=None):
        """Work after training a task; nothing for plain baselines."""

    def task_masks(self, k):
        """Subnetwork masks for task k's task-aware prediction (None = the whole network)."""
        return None

    def stacked_task_masks(self, tasks):
        """Per unit layer, a (len(tasks), units) stack of the tasks' masks; None = whole network."""
        return None

    def json_state(self):
        """What is saved as JSON with a run: the tasks seen, the time spent, and (in subclasses)
        method-specific state. Tensors are saved separately (:meth:`tensor_state`)."""
        return {"tasks_seen": len(self.tasks), "timing": dict(self.timing)}

    def load_json_state(self, state, tasks):
        """Restore what :meth:`json_state` returned; ``tasks`` is the run's task layout."""
        seen = state.get("tasks_seen")
        if not isinstance(seen, int) or not 0 <= seen <= len(tasks):
            raise UserError(f"the learner's number of seen tasks ({seen!r}) does not fit the run's "
                            f"{len(tasks)} tasks")
        self.tasks = list(tasks[:seen])
        timing = state.get("timing")
        if (not isinstance(timing, dict) or set(timing) != {"train", "consolidate"}
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in timing.values())):
            raise UserError(f"the learner's timing ({timing!r}) must give seconds for train and consolidate")
        self.timing = {k: float(v) for k, v in timing.items()}

    def tensor_state(self):
        """Method-specific tensors saved with a run (a flat name -> tensor dict)."""
        return {}

    def load_tensor_state(self, tensors, n_tasks):
        """Restore what :meth:`tensor_state` returned for a run with ``n_tasks`` finished tasks;
        raise UserError when something is missing or has the wrong shape."""

    def replica(self):
        """A learner that shares this one's read-only state but has its own copy of the model, so
        that another thread can run LRP (which hooks the model) or masked passes at the same time.
        Only for finished runs: training the replica would not train this learner."""
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        return twin

    def pruning_curve(self, task, n_levels=48):
        """Validation accuracy along the task's relevance ranking; only methods that prune have one."""
        raise UserError(f"{self.method} does not prune, so it has no pruning curve.")

    def unit_owners(self):
        """Per unit layer, the task that froze each unit as a numpy array; -1 for free units, and
        for every unit of a method without masks."""
        return [np.full(n, -1, dtype=np.int64) for n in self.model.layer_sizes()]

    def can_recognise(self):
        """Whether task-agnostic prediction goes through a task recogniser (:meth:`recognise`)."""
        return False

    def recognise(self, x, want_input=False):
        """Task-agnostic prediction with the recognised task and why; only learners that
        :meth:`can_recognise` answer it."""
        raise UserError("This run has no task recognisers (no trained task yet, a method without them, or a "
                        "run saved before task recognition existed); train it again to recognise tasks.")

    def explain_task(self, result, row=0, n_features=8):
        """Why input ``row`` of a :meth:`recognise` result got its task (see :meth:`recognise`)."""
        return []

    # -- shared ---------------------------------------------------------------------------------
    @property
    def seen_classes(self):
        """Classes of every task seen so far (the output rows in use)."""
        return sum(t.n_classes for t in self.tasks)

    def subnetworks(self, x, tasks=None, want_input=False):
        """:func:`~rerelrp_core.subnetworks.subnetwork_pass` of ``x`` through the given tasks'
        subnetworks (default: all seen tasks)."""
        self.model.check_input(x)
        indices = list(range(len(self.tasks))) if tasks is None else list(tasks)
        return subnetwork_pass(self.model, self.stacked_task_masks(indices), [self.tasks[t] for t in indices],
                               x, self.config.relevance_batch * 2, self.device, want_input)

    def add_task(self, task):
        if task.offset + task.n_classes > self.model.n_classes:
            raise UserError(f"Task {task.index} needs output rows up to {task.offset + task.n_classes}, "
                            f"but the model has {self.model.n_classes}.")
        if len(self.tasks) == task.index:
            self.tasks.append(task.spec)

    def train_task(self, task, progress=None, should_stop=None):
        """Fit ``task`` with SGD, early stopping and learning-rate decay on its validation split
        (:func:`~rerelrp_core.learners.training.fit_task`); returns the best validation accuracy.

        ``progress(event)`` gets a :class:`~rerelrp_core.progress.Progress` after every epoch; when
        ``should_stop()`` returns True training raises :class:`Cancelled` (the model keeps its last
        state)."""
        started = time.perf_counter()
        self.add_task(task)
        best = fit_task(self, task, progress, should_stop)
        self.timing["train"] += time.perf_counter() - started
        return best

    def validation_accuracy(self, task, masks=None, at_least=None):
        """Accuracy (percent) on ``task``'s validation images through the subnetwork ``masks`` (per
        layer (units,); None: all units). With ``at_least`` the pass stops as soon as the accuracy
        can no longer reach it and returns a value below it: the most the accuracy could still
        have been. Batches are those of a whole pass, so every prediction is the same to the bit.
        Only a CPU stops early: on a GPU the check would make it wait for every batch."""
        n, batch = len(task.y_val), inference_batch(self.device)
        stop_early = at_least is not None and self.device.type == "cpu"
        predicted, correct = [], 0
        for start in range(0, n, batch):
            logits = batched_logits(self.model, task.x_val[start:start + batch], masks, batch)
            predicted.append(logits[:, task.rows].argmax(1))
            if stop_early and start + batch < n:
                correct += int((predicted[-1] == task.y_val[start:start + batch]).sum())
                most = accuracy_of_count(correct + n - start - batch, n)
                if most < at_least:
                    return most
        return accuracy(torch.cat(predicted), task.y_val) if n else 0.0

    def stored_bytes(self, k):
        """Bytes of state kept for task k beyond the shared backbone."""
        return sum(self.stored_parts(k).values())

    def stored_parts(self, k):
        """What task k keeps beyond the shared backbone, in bytes, by kind: here its head rows (float32)."""
        return {"head rows": self.tasks[k].n_classes * (self.model.head.in_features + 1) * 4}

    def metrics(self):
        """What this learner reports in metrics.json: time spent and bytes kept per task (by kind)."""
        return {"timing_s": {"train": round(self.timing["train"], 3),
                             "consolidate": round(self.timing["consolidate"], 3)},
                "stored_bytes_per_task": [self.stored_bytes(k) for k in range(len(self.tasks))],
                "stored_parts_per_task": [self.stored_parts(k) for k in range(len(self.tasks))]}

    def taw_scores(self, x, k):
        """Scores of task k's classes for every input, through task k's subnetwork (higher: more
        likely; :meth:`predict_taw` is their argmax)."""
        return batched_logits(self.model, x, self.task_masks(k))[:, self.tasks[k].rows].cpu()

    def predict_taw(self, x, k):
        """Class index within task k of every input, through task k's subnetwork."""
        return self.taw_scores(x, k).argmax(1)

    def tag_scores(self, x):
        """Scores of every class seen so far (output rows; :meth:`predict_tag` is their argmax)."""
        return batched_logits(self.model, x)[:, :self.seen_classes].cpu()

    def predict_tag(self, x):
        """Global class (output row) of every input, over all classes seen so far."""
        return self.tag_scores(x).argmax(1)

    def tag_outcome(self, x):
        """Task-agnostic prediction of every input with what it rests on: ``predicted`` (global
        rows) and, for a method that recognises tasks, ``task`` (recognised) and ``task_probs``
        (N, tasks); else ``scores`` over the seen classes."""
        scores = self.tag_scores(x)
        return {"predicted": scores.argmax(1), "scores": scores}
