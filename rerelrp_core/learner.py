"""The interface every continual learner shares, and the two reference baselines (fine-tuning,
joint training). ReReLRP lives in rerelrp.py, EWC/LwF/iCaRL in baselines.py.

Every learner is used the same way, task after task::

    learner.train_task(task)      # fit the task's data
    learner.consolidate(task)     # method-specific work after training (ReReLRP: LRP, prune, freeze)
    learner.predict_taw(x, k)     # class within task k, task label given (task-aware)
    learner.predict_tag(x)        # global class, task label unknown (task-agnostic)

A new method is one subclass that overrides the hooks it needs.
"""
import copy
import time
from dataclasses import dataclass, asdict, field, fields

import torch
import torch.nn.functional as F

from .errors import UserError
from .recognition import subnetwork_pass


class Cancelled(Exception):
    """Raised inside training when the caller's ``should_stop`` returns True."""


@dataclass
class TrainConfig:
    """Everything that decides how a run is trained; stored in every run file.

    Parameters
    ----------
    method: ``rerelrp``, ``finetune`` or ``joint``.
    arch: model architecture (``cnn``, ``vgg11``, ``resnet18``).
    epochs: maximum epochs per task (early stopping may end sooner).
    lr, momentum, weight_decay, batch_size: SGD settings.
    patience: epochs without a better validation accuracy before the learning rate is divided by
        ``1 / lr_decay``; after ``max_decays`` such decays training stops.
    loss_scope: ``task`` (cross-entropy over the current task's head rows) or ``seen`` (over all
        classes seen so far).
    acc_drop: validation accuracy points a task may lose to pruning.
    ref_per_class: reference samples per class for relevance (research default 67).
    max_keep_fraction: optional cap on the share of all units one task may keep.
    reg_strength: baselines' regularisation weight (None = the method's default: EWC 50000, LwF 0.5).
    memory: iCaRL's exemplar buffer, in images (2000, as in the paper's comparison).
    reinit_free: re-initialise units no task owns before each new task.
    keep_snapshots: keep a float16 copy of the weights after every task (for explanation drift).
    recognition: overrides of :class:`~rerelrp_core.recognition.RecognitionConfig` fields.
    seed: seed of initialisation, shuffling and sample draws.
    device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """
    method: str = "rerelrp"
    arch: str = "cnn"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    patience: int = 2
    lr_decay: float = 0.3
    max_decays: int = 2
    loss_scope: str = "task"
    acc_drop: float = 1.0
    ref_per_class: int = 67
    max_keep_fraction: float = None
    reg_strength: float = None
    memory: int = 2000
    reinit_free: bool = False
    keep_snapshots: bool = False
    relevance_batch: int = 256
    recognition: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"Unknown training settings: {', '.join(sorted(unknown))}.")
        return cls(**values)

    def to_dict(self):
        return asdict(self)


def resolve_device(name="auto"):
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"Unknown device '{name}'. Use auto, cpu or cuda.")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was requested but no GPU is available; use --device cpu or auto.")
    return torch.device(name)


@torch.no_grad()
def batched_logits(model, x, masks=None, batch_size=2048):
    """Logits of ``x`` (on any device) in batches, through the subnetwork given by ``masks``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.set_masks(None if masks is None else [m.to(device) for m in masks])
    out = [model(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    model.set_masks(None)
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.n_classes, device=device)


def accuracy(predicted, labels):
    return 100.0 * float((predicted.cpu() == labels.cpu()).float().mean()) if len(labels) else 0.0


class Learner:
    """Shared machinery: the model, the tasks seen so far (their head slices), SGD training with
    early stopping, and task-aware prediction. Subclasses decide what is trainable and what happens
    after a task."""

    method = None

    def __init__(self, model, config, device=None):
        self.model = model
        self.config = config
        self.device = device or resolve_device(config.device)
        self.model.to(self.device)
        self.heads = []           # (offset, n_classes) of every task seen so far
        self.timing = {"train": 0.0, "consolidate": 0.0}

    # -- hooks for subclasses -------------------------------------------------------------------
    def training_data(self, task):
        """(inputs, target output rows) to fit for ``task``."""
        return task.x_train, task.y_train + task.offset

    def loss_columns(self, task):
        """The output rows the cross-entropy of ``task`` runs over."""
        if self.config.loss_scope == "seen":
            return slice(0, task.offset + task.n_classes)
        if self.config.loss_scope != "task":
            raise UserError(f"Unknown loss_scope '{self.config.loss_scope}'. Use task or seen.")
        return task.head_slice

    def before_task(self, task):
        """Preparation before ``task`` is trained; nothing by default."""

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

    def subnetworks(self, x, tasks=None, want_input=False):
        """:func:`~rerelrp_core.recognition.subnetwork_pass` of ``x`` through the given tasks'
        subnetworks (default: all seen tasks)."""
        self.model.check_input(x)
        tasks = list(range(len(self.heads))) if tasks is None else list(tasks)
        return subnetwork_pass(self.model, self.stacked_task_masks(tasks), self.heads, x, tasks,
                               self.config.relevance_batch * 2, self.device, want_input)

    def json_state(self):
        """Method-specific state that is saved as JSON with a run (tensors are saved separately)."""
        return {}

    def load_json_state(self, state):
        """Restore what :meth:`json_state` returned."""

    def tensor_state(self):
        """Method-specific tensors saved with a run (a flat name -> tensor dict)."""
        return {}

    def load_tensor_state(self, tensors, n_tasks):
        """Restore what :meth:`tensor_state` returned for a run with ``n_tasks`` finished tasks;
        raise UserError when something is missing or has the wrong shape."""

    # -- shared ---------------------------------------------------------------------------------
    def add_task(self, task):
        if task.offset + task.n_classes > self.model.n_classes:
            raise UserError(f"Task {task.index} needs output rows up to {task.offset + task.n_classes}, "
                            f"but the model has {self.model.n_classes}.")
        if len(self.heads) == task.index:
            self.heads.append((task.offset, task.n_classes))

    def train_task(self, task, progress=None, should_stop=None):
        """Fit ``task`` with SGD, early stopping and learning-rate decay on its validation split.

        ``progress(stage, done, total, info)`` is called after every epoch; when ``should_stop()``
        returns True training raises :class:`Cancelled` (the model keeps its last state)."""
        started = time.perf_counter()
        self.add_task(task)
        torch.manual_seed(self.config.seed * 1000 + task.index)
        x, rows = self.training_data(task)
        columns = self.loss_columns(task)
        self.before_task(task)
        freezer = self.freezer(task)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr, momentum=self.config.momentum,
                                    weight_decay=self.config.weight_decay)
        best, best_state, stale, decays = -1.0, None, 0, 0
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + task.index)
        for epoch in range(self.config.epochs):
            loss = self._epoch(x, rows, columns, optimizer, freezer, generator, task.index, should_stop)
            val = self.validation_accuracy(task)
            if val > best:
                best, best_state, stale = val, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
            if progress:
                progress("train", epoch + 1, self.config.epochs, {"task": task.index, "loss": loss, "val_acc": val})
            if stale >= self.config.patience:
                if decays >= self.config.max_decays:
                    break
                decays, stale = decays + 1, 0
                for group in optimizer.param_groups:
                    group["lr"] *= self.config.lr_decay
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.timing["train"] += time.perf_counter() - started
        return best

    def _epoch(self, x, rows, columns, optimizer, freezer, generator, task_index, should_stop):
        self._set_train_mode(task_index)
        order = torch.randperm(len(x), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(x), self.config.batch_size):
            if should_stop and should_stop():
                raise Cancelled()
            idx = order[start:start + self.config.batch_size]
            xb, yb = x[idx].to(self.device), rows[idx].to(self.device)
            loss = self.loss(xb, yb, self.model(xb), columns)
            if not torch.isfinite(loss):
                raise UserError(f"Training diverged in task {task_index} (the loss became {loss.item()}); "
                                "lower the learning rate (--lr) and train again or resume.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if freezer:
                freezer.restore()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        return total / max(count, 1)

    def _set_train_mode(self, task_index):
        """Training mode, except BatchNorm statistics, which stay frozen after the first task
        (later tasks must not shift the normalisation earlier subnetworks rely on)."""
        self.model.train()
        if task_index > 0:
            for bn in self.model.batchnorms():
                bn.eval()

    def validation_accuracy(self, task, masks=None):
        logits = batched_logits(self.model, task.x_val, masks)
        return accuracy(logits[:, task.head_slice].argmax(1), task.y_val)

    def stored_bytes(self, k):
        """Bytes of state kept for task k beyond the shared backbone."""
        return sum(self.stored_parts(k).values())

    def stored_parts(self, k):
        """What task k keeps beyond the shared backbone, in bytes, by kind: here its head rows (float32)."""
        offset, n = self.heads[k]
        return {"head rows": n * (self.model.head.in_features + 1) * 4}

    def predict_taw(self, x, k):
        """Class index within task k of every input, through task k's subnetwork."""
        offset, n = self.heads[k]
        return batched_logits(self.model, x, self.task_masks(k))[:, offset:offset + n].argmax(1).cpu()

    def predict_tag(self, x):
        """Global class (output row) of every input, over all classes seen so far."""
        seen = sum(n for _, n in self.heads)
        return batched_logits(self.model, x)[:, :seen].argmax(1).cpu()


class FineTune(Learner):
    """Trains every parameter on each new task with no protection: the lower bound."""
    method = "finetune"


class Joint(Learner):
    """Trains on the union of all tasks' data seen so far: the upper bound (it stores everything)."""
    method = "joint"

    def __init__(self, model, config, device=None):
        super().__init__(model, config, device)
        self.seen_x, self.seen_rows = [], []
        self.image_bytes = []     # per task: bytes of the training images joint training keeps

    def training_data(self, task):
        if len(self.image_bytes) == task.index:
            self.seen_x.append(task.x_train)
            self.seen_rows.append(task.y_train + task.offset)
            self.image_bytes.append(task.x_train.numel())    # as uint8, one byte per pixel (like iCaRL's)
        return torch.cat(self.seen_x), torch.cat(self.seen_rows)

    def loss_columns(self, task):
        return slice(0, task.offset + task.n_classes)

    def stored_parts(self, k):
        """Head rows plus every training image of task k (one byte per pixel), which joint training
        must keep."""
        return {**super().stored_parts(k), "images": self.image_bytes[k]}

    def json_state(self):
        return {"image_bytes": self.image_bytes}

    def resume(self, finished_tasks):
        """Joint training keeps every image it saw; a saved run does not, so take them again."""
        self.seen_x = [t.x_train for t in finished_tasks]
        self.seen_rows = [t.y_train + t.offset for t in finished_tasks]

    def load_json_state(self, state):
        self.image_bytes = [int(b) for b in state.get("image_bytes", [])]
