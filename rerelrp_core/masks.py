"""Which task owns which unit, the subnetwork masks, and freezing that really freezes.

A task's *keep mask* says, per unit layer, which units its subnetwork uses (True) and which it pruned
(its subnetwork sees them output 0). Every unit kept by some task is *frozen*: its parameters never
change again. :class:`Freezer` enforces that bit for bit by writing the frozen values back after
every optimiser step, so momentum and weight decay cannot move them either.
"""
import torch

from .errors import UserError


class UnitOwnership:
    """The keep masks of all consolidated tasks, one list of bool tensors (one per layer) per task."""

    def __init__(self, layer_sizes, task_masks=None):
        self.layer_sizes = list(layer_sizes)
        self.task_masks = [list(m) for m in task_masks or []]

    @property
    def n_tasks(self):
        return len(self.task_masks)

    def add_task(self, keep):
        if [len(k) for k in keep] != self.layer_sizes:
            raise ValueError(f"keep mask sizes {[len(k) for k in keep]} != layer sizes {self.layer_sizes}")
        self.task_masks.append([k.bool().cpu() for k in keep])

    def frozen(self):
        """Per layer, the units kept by any task so far."""
        frozen = [torch.zeros(n, dtype=torch.bool) for n in self.layer_sizes]
        for keep in self.task_masks:
            frozen = [f | k for f, k in zip(frozen, keep)]
        return frozen

    def owner(self):
        """Per layer, the first task that kept each unit (the one that froze it), -1 for free units."""
        owner = [torch.full((n,), -1, dtype=torch.int64) for n in self.layer_sizes]
        for t, keep in enumerate(self.task_masks):
            for o, k in zip(owner, keep):
                o[k & (o < 0)] = t
        return owner

    def free_fraction(self):
        """Per layer, the fraction of units no task has frozen yet."""
        return [float((~f).float().mean()) for f in self.frozen()]

    def task_mask(self, task, device=None):
        """Task ``task``'s subnetwork as float masks (one per layer) for ContinualNet.subnetwork."""
        return [k.float().to(device) for k in self.task_masks[task]]

    def stacked_masks(self, tasks, rows_per_task, device=None):
        """Per-row masks for one batched pass through several subnetworks: the first
        ``rows_per_task`` rows use ``tasks[0]``'s subnetwork, the next ones ``tasks[1]``'s, ..."""
        return [torch.stack([self.task_masks[t][i] for t in tasks]).float().to(device)
                .repeat_interleave(rows_per_task, dim=0) for i in range(len(self.layer_sizes))]


    def tensor_state(self):
        """The keep masks as uint8 tensors named ``mask.task{t}.layer{i}``."""
        return {f"mask.task{t}.layer{i}": m.to(torch.uint8)
                for t, keep in enumerate(self.task_masks) for i, m in enumerate(keep)}

    def load_tensor_state(self, tensors, n_tasks):
        """Read back the keep masks of ``n_tasks`` tasks, checking their sizes."""
        for t in range(n_tasks):
            keep = [tensors.get(f"mask.task{t}.layer{i}") for i in range(len(self.layer_sizes))]
            if any(k is None or tuple(k.shape) != (n,) for k, n in zip(keep, self.layer_sizes)):
                raise UserError(f"the masks of task {t} are missing or have the wrong size")
            self.add_task([k.bool() for k in keep])


class Freezer:
    """Holds parameters and BatchNorm statistics of frozen units, frozen head rows and ``whole``
    tensors fixed across optimiser steps (BatchNorms keep training mode in every task, so the
    statistics of free units follow the new task while frozen units' are put back).

    Call :meth:`restore` after every ``optimizer.step()``: the frozen entries get back exactly the
    values they had when the Freezer was made, whatever the gradient, momentum or weight decay did.
    """

    def __init__(self, model, frozen_units, frozen_head_rows, whole=()):
        self.entries = []
        # parameters frozen as a whole (the shared ones after the first task); the same restore,
        # over a view with one row per element, so 0-dim parameters need no case of their own
        for param in whole:
            self._add(param.detach().view(-1), torch.ones(param.numel(), dtype=torch.bool))
        for layer, frozen in zip(model.unit_layers, frozen_units):
            if frozen.any():
                for param in layer.unit_parameters() + layer.unit_statistics():
                    self._add(param, frozen)
        if frozen_head_rows.any():
            for param in (model.head.weight, model.head.bias):
                self._add(param, frozen_head_rows)

    def _add(self, param, rows):
        # indices, not a bool mask: writing through a mask finds its True entries (a GPU sync) every step
        index = torch.nonzero(rows).flatten().to(param.device)
        self.entries.append((param, index, param.detach().index_select(0, index).clone()))

    @torch.no_grad()
    def restore(self):
        for param, index, values in self.entries:
            param.index_copy_(0, index, values)

