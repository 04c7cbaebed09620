"""The task layout: which classes a task holds and where its rows sit in the shared output layer.

One small type, :class:`TaskSpec`, describes a task everywhere: the data split (``TaskData`` adds
the images), the learner (the tasks it has seen) and the saved run (``run.json``'s ``tasks``).
"""
from dataclasses import dataclass

import torch

from .errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """Task ``index``: its data-set class ids and names, and its first output row ``offset``
    (class ``c`` of the task, counted from 0, is output row ``offset + c``)."""
    index: int
    classes: tuple
    class_names: tuple
    offset: int

    @property
    def n_classes(self):
        return len(self.classes)

    @property
    def rows(self):
        """The task's output rows (its head slice)."""
        return slice(self.offset, self.offset + self.n_classes)

    def has_row(self, row):
        """Whether global output row ``row`` is one of this task's classes."""
        return self.offset <= row < self.offset + self.n_classes

    @property
    def spec(self):
        """Just the layout (drops whatever a subclass adds, e.g. images)."""
        return TaskSpec(self.index, tuple(self.classes), tuple(self.class_names), self.offset)

    def to_dict(self):
        return {"index": self.index, "classes": list(self.classes), "class_names": list(self.class_names),
                "offset": self.offset}

    @classmethod
    def from_dict(cls, values):
        """A TaskSpec from its JSON form; raises UserError when a field is missing or malformed."""
        try:
            spec = cls(int(values["index"]), tuple(int(c) for c in values["classes"]),
                       tuple(str(n) for n in values["class_names"]), int(values["offset"]))
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"a task entry is malformed ({error!r})") from None
        if spec.offset < 0:
            raise UserError(f"task {spec.index} has a negative offset ({spec.offset})")
        if len(spec.class_names) != spec.n_classes:
            raise UserError(f"task {spec.index} has {spec.n_classes} classes "
                            f"but {len(spec.class_names)} names")
        return spec


def head_slices(tasks, n_rows, device=None):
    """(len(tasks), n_rows) bool: row i marks the output rows of ``tasks[i]``'s head slice."""
    slices = torch.zeros(len(tasks), n_rows, dtype=torch.bool, device=device)
    for i, task in enumerate(tasks):
        slices[i, task.rows] = True
    return slices


def task_of_rows(tasks):
    """(rows,) int64: the position in ``tasks`` of the task each output row belongs to."""
    return torch.cat([torch.full((task.n_classes,), k) for k, task in enumerate(tasks)])


def class_of_row(tasks, row):
    """(task, class within the task) of global output row ``row``."""
    for task in tasks:
        if task.has_row(row):
            return task, row - task.offset
    raise UserError(f"Output row {row} belongs to no task of this run.")
