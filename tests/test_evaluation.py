"""Evaluation after every task from frozen subnetworks' cached outputs gives exactly the metrics
of scoring from scratch, and computes each (test set, subnetwork) pair once."""
import rerelrp_core.evaluation as evaluation
import rerelrp_core.sequence as sequence
from rerelrp_core.evaluation import FrozenEvaluation, evaluate_step, evaluator_for
from rerelrp_core.sequence import train_sequence

from conftest import small_config


def test_cached_evaluation_gives_the_metrics_of_scoring_from_scratch(digits, digits_split, digits_run,
                                                                       monkeypatch):
    assert isinstance(evaluator_for(digits_run.learner), FrozenEvaluation)
    calls = []
    real = evaluation.batched_logits

    def counted(model, x, masks=None, batch_size=2048):
        calls.append(len(x))
        return real(model, x, masks, batch_size)

    monkeypatch.setattr(evaluation, "batched_logits", counted)
    cached = train_sequence(digits, digits_split, small_config())
    n = digits_split.n_tasks
    assert len(calls) == n * n             # every (test set, subnetwork) pair once, over the whole run
    monkeypatch.setattr(sequence, "evaluator_for", lambda learner: evaluate_step)
    scratch = train_sequence(digits, digits_split, small_config())
    for key in ("acc_taw", "acc_tag", "task_confusion"):
        assert cached.history[key] == scratch.history[key] == digits_run.history[key], key


def test_methods_without_frozen_recognition_score_from_scratch(digits_forest_run):
    assert evaluator_for(digits_forest_run.learner) is evaluate_step
