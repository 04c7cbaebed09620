"""Test accuracy of every seen task after each task of a sequence.

:func:`evaluate_step` scores from scratch and works for every learner. :class:`FrozenEvaluation` does
the same for ReReLRP with class-Gaussian recognition at a fraction of the cost: subnetwork k and task
k's head rows never change after task k, and neither does the recognition space, so the logits
of a test set through subnetwork k and its recognition features are computed once and reused at
every later step (the distances to the classes, a small product, are redone each step with the
recogniser's own code). After task t only subnetwork t (over every seen test set) and the new test
set's features are computed. It gives the same metrics as :func:`evaluate_step` (tested).
"""
import torch

from .class_gaussians import ClassGaussians
from .models import batched_logits
from .outcomes import image_outcomes, step_scores
from .tasks import task_of_rows


def evaluate_step(learner, tasks):
    """Test accuracy (percent) of every task in ``tasks``: task-aware row, task-agnostic row, the
    task confusion matrix (rows: true task, columns: recognised task), and every test image's
    outcomes (:mod:`~rerelrp_core.outcomes`) they are counted from."""
    task_of_row = task_of_rows(learner.tasks)
    outcomes = [image_outcomes(task, task_of_row, learner.taw_scores(task.x_test, task.index),
                               learner.tag_outcome(task.x_test)) for task in tasks]
    return (*step_scores(tasks, outcomes, len(learner.tasks)), outcomes)


class FrozenEvaluation:
    """:func:`evaluate_step` for one sequence, remembering what frozen subnetworks computed (see the
    module docstring). Keep one per sequence; it lives in memory only."""

    def __init__(self):
        self.logits = {}        # (test set j, subnetwork k) -> logits over task k's head rows
        self.features = {}      # test set j -> its features in the recognition space

    def __call__(self, learner, tasks):
        recogniser, seen = learner.recogniser, learner.tasks[:len(tasks)]
        task_of_row = task_of_rows(seen)
        outcomes = []
        for task in tasks:
            j = task.index
            for k, spec in enumerate(seen):
                if (j, k) not in self.logits:
                    logits = batched_logits(learner.model, task.x_test, learner.task_masks(k))
                    self.logits[(j, k)] = logits[:, spec.rows].cpu()
            if j not in self.features:
                self.features[j] = recogniser.features(learner, task.x_test)
            distance = recogniser.distances(self.features[j])[:, :len(task_of_row)]
            recognised, task_probs = recogniser.tasks_of(distance, seen)
            tag = {"predicted": self._tag_rows(j, recognised, seen), "task": recognised,
                   "task_probs": task_probs}
            outcomes.append(image_outcomes(task, task_of_row, self.logits[(j, j)], tag))
        return (*step_scores(tasks, outcomes, len(learner.tasks)), outcomes)

    def _tag_rows(self, j, recognised, seen):
        """Global rows predicted for test set j: within its ``recognised`` task, that task's
        subnetwork's best class among its own rows."""
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
