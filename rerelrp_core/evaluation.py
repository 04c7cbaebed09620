"""Test accuracy of every seen task after each task of a sequence.

:func:`evaluate_step` scores from scratch and works for every learner. :class:`FrozenEvaluation` does
the same for ReReLRP with class-Gaussian recognition at a fraction of the cost: subnetwork k and task
k's head rows never change after task k, and neither does subnetwork 0's feature space, so the logits
of a test set through subnetwork k and its recognition features are computed once and reused at
every later step (the distances to the classes, a small product, are redone each step with the
recogniser's own code). After task t only subnetwork t (over every seen test set) and the new test
set's features are computed. It gives the same metrics as :func:`evaluate_step` (tested).
"""
import torch

from .class_gaussians import ClassGaussians
from .learners import accuracy
from .models import batched_logits
from .tasks import task_of_rows


def evaluate_step(learner, tasks):
    """Test accuracy (percent) of every task in ``tasks``: task-aware row, task-agnostic row, and
    the task confusion matrix (rows: true task, columns: task of the predicted class)."""
    taw = [accuracy(learner.predict_taw(task.x_test, task.index), task.y_test) for task in tasks]
    predicted = [learner.predict_tag(task.x_test) for task in tasks]
    return _scores(learner, tasks, taw, predicted)


def _scores(learner, tasks, taw, predicted):
    """The task-agnostic row and the task confusion matrix from each task's predicted rows."""
    task_of_row = task_of_rows(learner.tasks)
    tag = [accuracy(rows, task.y_test + task.offset) for rows, task in zip(predicted, tasks)]
    confusion = torch.zeros(len(tasks), len(learner.tasks), dtype=torch.int64)
    for task, rows in zip(tasks, predicted):
        confusion[task.index] = torch.bincount(task_of_row[rows], minlength=len(learner.tasks))
    return taw, tag, confusion[:, :len(tasks)].tolist()


class FrozenEvaluation:
    """:func:`evaluate_step` for one sequence, remembering what frozen subnetworks computed (see the
    module docstring). Keep one per sequence; it lives in memory only."""

    def __init__(self):
        self.logits = {}        # (test set j, subnetwork k) -> logits over task k's head rows
        self.features = {}      # test set j -> its features in subnetwork 0's space

    def __call__(self, learner, tasks):
        recogniser = learner.recogniser
        taw, predicted = [], []
        for task in tasks:
            j = task.index
            for k, spec in enumerate(learner.tasks[:len(tasks)]):
                if (j, k) not in self.logits:
                    logits = batched_logits(learner.model, task.x_test, learner.task_masks(k))
                    self.logits[(j, k)] = logits[:, spec.rows].cpu()
            if j not in self.features:
                self.features[j] = recogniser.features(learner, task.x_test)
            taw.append(accuracy(self.logits[(j, j)].argmax(1), task.y_test))
            predicted.append(self._tag_rows(learner, j, recogniser.distances(self.features[j]), len(tasks)))
        return _scores(learner, tasks, taw, predicted)

    def _tag_rows(self, learner, j, distance, n_tasks):
        """Global rows predicted for test set j (``distance``: its distances to every class): the
        nearest class's task, then that task's subnetwork's best class among its own rows."""
        seen = learner.tasks[:n_tasks]
        recognised = task_of_rows(seen)[distance[:, :sum(t.n_classes for t in seen)].argmin(1)]
        rows = torch.empty(len(recognised), dtype=torch.int64)
        for k, spec in enumerate(seen):
            mine = recognised == k
            rows[mine] = self.logits[(j, k)][mine].argmax(1) + spec.offset
        return rows


def evaluator_for(learner):
    """The evaluation a sequence of ``learner`` uses: cached where subnetworks and recognition are
    frozen (ReReLRP with class Gaussians), from scratch otherwise."""
    if learner.ownership is not None and isinstance(learner.recogniser, ClassGaussians):
        return FrozenEvaluation()
    return evaluate_step
