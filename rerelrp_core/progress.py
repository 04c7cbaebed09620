"""Progress of a training run: one list of stages and one event type.

The engine emits :class:`Progress` events; the CLI's bars, the Train page and any other consumer
read their fields (and :meth:`Progress.describe` for one line of text) instead of decoding strings.
"""
from dataclasses import dataclass
from enum import Enum


class Stage(str, Enum):
    """The stages of a run, in the order they happen for each task."""
    DATA = "data"                  # the data set is loaded
    TRAIN = "train"                # one epoch of a task finished
    RELEVANCE = "relevance"        # LRP relevance of the task's reference images computed
    PRUNE = "prune"                # the pruning search finished, kept units frozen
    RECOGNISERS = "recognisers"    # task recognisers (re)trained
    EVALUATE = "evaluate"          # every seen task evaluated after a task


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` steps of ``stage`` (epochs for TRAIN, tasks for
    EVALUATE), for task ``task``; the other fields are filled where the stage has them."""
    stage: Stage
    done: int
    total: int
    task: int = None
    loss: float = None
    val_acc: float = None
    pruned: int = None
    kept: int = None
    passes: int = None
    acc_taw: list = None
    acc_tag: list = None
    images: int = None

    def describe(self):
        """One line for people."""
        if self.stage is Stage.DATA:
            return f"data loaded ({self.images} training images)"
        if self.stage is Stage.TRAIN:
            return (f"training task {self.task}: epoch {self.done}/{self.total}, loss {self.loss:.3f}, "
                    f"validation accuracy {self.val_acc:.1f}%")
        if self.stage is Stage.RELEVANCE:
            return f"task {self.task}: LRP relevance computed"
        if self.stage is Stage.PRUNE:
            return (f"task {self.task}: pruned {self.pruned} units, kept {self.kept} "
                    f"({self.passes} validation passes)")
        if self.stage is Stage.RECOGNISERS:
            return f"task {self.task}: task recognisers trained"
        return f"task {self.task} evaluated"
