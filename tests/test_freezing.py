"""Freezing really freezes: frozen units are bit-for-bit unchanged by later tasks (momentum and
weight decay included), and task-aware forgetting of ReReLRP is exactly zero."""
import numpy as np
import torch

from rerelrp_core.evaluation import evaluate_step
from rerelrp_core.explain import reuse_matrix
from rerelrp_core.learners.rerelrp import ReReLRP
from rerelrp_core.models import build_model

from conftest import small_config


def values_of(model, frozen_units, head_rows):
    """Copies of the parameter entries of the given units and of head rows 0..head_rows-1."""
    values = []
    for layer, frozen in zip(model.unit_layers, frozen_units):
        values += [p.detach()[frozen].clone() for p in layer.unit_parameters()]
    return values + [model.head.weight.detach()[:head_rows].clone(),
                     model.head.bias.detach()[:head_rows].clone()]


def test_frozen_units_unchanged_and_taw_forgetting_zero(digits, digits_tasks):
    config = small_config(weight_decay=1e-2, momentum=0.9)   # strong decay: any leak would show
    model = build_model("cnn", digits.input_shape, 6)
    learner = ReReLRP(model, config)
    learner.train_task(digits_tasks[0])
    learner.consolidate(digits_tasks[0])
    frozen_first = learner.ownership.frozen()
    after_first = values_of(model, frozen_first, 2)
    first_rows = evaluate_step(learner, digits_tasks[:1])[0]
    head_before = model.head.weight.detach()[2:4].clone()
    assert any(f.any() for f in learner.ownership.frozen()), "task 0 froze no unit"
    for task in digits_tasks[1:]:
        learner.train_task(task)
        learner.consolidate(task)
    # exactly the same bits, not merely close
    for before, after in zip(after_first, values_of(model, frozen_first, 2)):
        assert torch.equal(before, after)
    assert evaluate_step(learner, digits_tasks[:1])[0] == first_rows
    # the new task's head rows did train (the research code froze them by accident)
    assert not torch.equal(head_before, model.head.weight.detach()[2:4])


def test_free_units_do_train(digits, digits_tasks):
    model = build_model("cnn", digits.input_shape, 6)
    learner = ReReLRP(model, small_config(epochs=3))
    learner.train_task(digits_tasks[0])
    learner.consolidate(digits_tasks[0])
    frozen = learner.ownership.frozen()
    layer = model.unit_layers[-1]
    free_before = layer.unit_parameters()[0].detach()[~frozen[-1]].clone()
    learner.train_task(digits_tasks[1])
    assert (~frozen[-1]).any()
    assert not torch.equal(free_before, layer.unit_parameters()[0].detach()[~frozen[-1]])


def test_run_taw_forgetting_exactly_zero(digits_run):
    metrics = digits_run.metrics
    assert metrics["forgetting_taw"] == 0.0
    matrix = metrics["acc_taw"]
    for k in range(len(matrix)):
        assert len({row[k] for row in matrix[k:]}) == 1, (
            f"task {k} accuracy changed: {[r[k] for r in matrix[k:]]}")


def test_pruned_units_output_exactly_zero_even_when_their_weights_are_nan(digits_run, digits_tasks):
    learner = digits_run.learner
    model = learner.model
    x = digits_tasks[0].x_test
    before = learner.predict_taw(x, 0)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    free = [~f for f in learner.ownership.frozen()]
    try:
        with torch.no_grad():
            for layer, mask in zip(model.unit_layers, free):
                for param in layer.unit_parameters():
                    param[mask] = float("nan")
        assert torch.equal(learner.predict_taw(x, 0), before)
    finally:
        model.load_state_dict(saved)


def test_reuse_matrix_counts_where_each_subnetwork_comes_from(digits_run):
    matrix = reuse_matrix(digits_run)
    masks = digits_run.learner.ownership.task_masks
    n = len(masks)
    assert matrix.shape == (n, n)
    assert np.allclose(matrix.sum(0), 1)                    # every kept unit was frozen by someone
    assert np.all(np.tril(matrix, -1) == 0)                 # never by a later task
    owner = digits_run.learner.ownership.owner()
    for j in range(n):                                      # the diagonal: the units task j froze itself
        own = sum(int((o[k] == j).sum()) for o, k in zip(owner, masks[j]))
        assert matrix[j, j] == own / sum(int(k.sum()) for k in masks[j])


def test_methods_without_subnetworks_have_no_reuse_matrix(digits, digits_split):
    from rerelrp_core.sequence import train_sequence
    run = train_sequence(digits, digits_split, small_config(method="finetune", epochs=1))
    assert reuse_matrix(run) is None
