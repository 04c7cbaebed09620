"""Pathways (conditional relevance through single units, one batched LRP pass) and reference images,
on real runs: the numbers agree with plain LRP, add up (completeness), respect the subnetworks,
leave the shared model as it was even when the pass fails, and flag broken conservation."""
import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from rerelrp_core import lrp_rules, pathways, relevance
from rerelrp_core.config import TrainConfig
from rerelrp_core.data import load_dataset, make_tasks
from rerelrp_core.errors import UserError
from rerelrp_core.learners import make_learner
from rerelrp_core.models import build_model
from rerelrp_core.pathways import INPUT, check_health, explain_pathway, unit_references
from rerelrp_core.relevance import input_heatmap, lrp_context, relevance_batch
from rerelrp_core.runs import load_run
from rerelrp_core.sequence import train_sequence

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo-runs" / "rerelrp"


def all_units(learner):
    return [np.arange(n) for n in learner.model.layer_sizes()]


def close(a, b, rel=1e-5):
    """Equal up to float error of one backward pass, relative to the larger magnitude."""
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-12)
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= rel * scale


def model_state(model):
    """Everything a pass could leave behind on the model."""
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())
    masks = [layer.mask.mask for layer in model.unit_layers]
    recorded = [layer.mask.recorded for layer in model.unit_layers]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return hooks, masks, recorded, model.training, weights


@pytest.fixture(scope="module")
def finetune_run(digits, digits_split):
    """A method without masks: the pathway runs through the whole network."""
    config = TrainConfig(method="finetune", epochs=2, device="cpu", seed=0)
    return train_sequence(digits, digits_split, config)


def test_pathway_agrees_with_plain_lrp(digits_run, digits_tasks):
    learner, task = digits_run.learner, digits_tasks[1]
    x = task.x_test[3:4]
    path = explain_pathway(learner, x, 1, classes=True)
    masks = learner.task_masks(1)
    predicted = int(learner.predict_taw(x, 1)[0]) + task.offset
    assert path.target == path.predicted == predicted and list(path.class_rows) == [predicted, 5 - predicted]
    with lrp_context(learner.model) as modified, learner.model.subnetwork(masks):
        plain = relevance_batch(modified, learner.model, x, torch.tensor([predicted]), want_input=True)
    for layer, units, owner, keep in zip(path.layers, plain.units, learner.ownership.owner(), masks):
        assert close(layer.relevance, units[0].numpy())
        assert np.array_equal(layer.owner, owner.numpy()) and np.array_equal(layer.kept, keep.numpy() > 0)
        # the top units: the most relevant units of the subnetwork, strongest first
        score = np.where(layer.kept, np.abs(layer.relevance), -1.0)
        assert layer.kept[layer.top].all() and len(layer.top) == min(6, layer.kept.sum())
        assert np.allclose(score[layer.top], np.sort(score)[::-1][:len(layer.top)])
    assert close(path.heatmap, plain.input[0].sum(0).numpy())
    assert close(path.logits, plain.logits[0, task.rows].numpy())
    other = input_heatmap(learner.model, x, torch.tensor([5 - predicted]), masks=masks)
    assert close(path.class_heatmaps[1], other[0].sum(0).numpy())
    assert close(path.class_flow[0], path.layers[-1].relevance)
    assert path.health.ok, path.health.warning
    assert np.array_equal(path.unit_heatmaps[(0, int(path.layers[0].top[0]))], path.layers[0].heatmaps[0])


def test_completeness_of_units_and_flows(digits_run, digits_tasks):
    """Through every unit of every layer: the units' conditional heatmaps add up to the heatmap, and
    the flows from all upper units into a lower unit add up to the lower unit's relevance."""
    learner = digits_run.learner
    path = explain_pathway(learner, digits_tasks[2].x_test[:1], 2, units=all_units(learner))
    for i, layer in enumerate(path.layers):
        assert layer.cut and close(layer.through, path.heatmap)
        assert close(layer.heatmaps.sum(0), path.heatmap)
        if i:
            assert close(layer.flow.sum(0), path.layers[i - 1].relevance)
    # the Flat rule makes every first-layer unit exactly conservative down to the input
    first = path.layers[0]
    assert close(first.heatmaps.sum((1, 2)), first.relevance[first.top], rel=1e-4)
    assert abs(path.heatmap.sum() - first.relevance.sum()) <= 1e-4 * abs(first.relevance).sum()


def test_edges_are_the_strongest_flows(digits_run, digits_tasks):
    path = explain_pathway(digits_run.learner, digits_tasks[0].x_test[:1], 0, top_units=4, top_edges=2,
                           classes=True)
    layers = path.layers
    into_input = [e for e in path.edges if e.lower == INPUT]
    assert [e.upper_unit for e in into_input] == list(layers[0].top)
    assert np.allclose([e.relevance for e in into_input], layers[0].heatmaps.sum((1, 2)), atol=1e-6)
    for i in range(1, len(layers)):
        for r, unit in enumerate(layers[i].top):
            mine = [e for e in path.edges if e.upper == i and e.upper_unit == unit]
            flows = layers[i].flow[r, layers[i - 1].top]
            assert len(mine) <= 2
            assert all(e.lower == i - 1 and e.lower_unit in layers[i - 1].top for e in mine)
            assert np.isclose(max(abs(e.relevance) for e in mine), np.abs(flows).max())
    for row in path.class_rows:
        mine = [e for e in path.edges if e.upper == len(layers) and e.upper_unit == row]
        assert 0 < len(mine) <= 2 and all(e.lower == len(layers) - 1 for e in mine)


def test_pruned_units_carry_nothing(digits_run, digits_tasks):
    learner = digits_run.learner
    for m in range(3):
        keep = [k.numpy() for k in learner.ownership.task_masks[m]]
        pruned = [np.flatnonzero(~k)[:3] if (~k).any() else None for k in keep]
        assert any(p is not None for p in pruned)
        path = explain_pathway(learner, digits_tasks[m].x_test[:1], m, units=pruned)
        for layer, p in zip(path.layers, pruned):
            if p is not None:
                assert (layer.relevance[p] == 0).all() and np.array_equal(layer.top, p)
                assert (layer.heatmaps == 0).all()
                assert layer.flow is None or (layer.flow == 0).all()
        top = explain_pathway(learner, digits_tasks[m].x_test[:1], m, top_units=500)
        # a subnetwork only holds units frozen by its own task or earlier ones
        for layer, k in zip(top.layers, keep):
            assert set(layer.top) == set(np.flatnonzero(k))
            assert (layer.owner[k] >= 0).all() and (layer.owner[k] <= m).all()


@pytest.mark.parametrize("where", ["_start_rows", "_most_relevant"])
def test_failure_mid_pass_leaves_the_model_as_it_was(digits_run, digits_tasks, monkeypatch, where):
    """Between the forward and the backward pass, or inside a tensor hook in the backward pass."""
    learner = digits_run.learner
    model, was_training = learner.model, learner.model.training
    x = digits_tasks[1].x_test[:1]
    reference = explain_pathway(learner, x, 1)

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    try:
        for training in (True, False):
            model.train(training)
            before = model_state(model)
            with monkeypatch.context() as patch:
                patch.setattr(pathways, where, broken)
                with pytest.raises(RuntimeError, match="broken on purpose"):
                    explain_pathway(learner, x, 1)
            after = model_state(model)
            assert after[0] == before[0] == len(model.unit_layers)      # the masks' own hooks only
            assert after[1] == [None] * len(model.unit_layers) and after[2] == [None] * len(model.unit_layers)
            assert after[3] is training
            assert all(torch.equal(before[4][k], v) for k, v in after[4].items())
    finally:
        model.train(was_training)
    again = explain_pathway(learner, x, 1)
    assert np.array_equal(again.heatmap, reference.heatmap)


def test_references_are_the_most_relevant_images(digits_run, digits_tasks):
    learner = digits_run.learner
    found = unit_references(learner, digits_tasks, per_unit=3, batch_size=50)
    # recompute every test image's raw relevance through its own subnetwork, at its own prediction
    per_layer = [[] for _ in learner.model.unit_layers]
    with lrp_context(learner.model) as modified:
        for task in digits_tasks:
            with learner.model.subnetwork(learner.task_masks(task.index)):
                rows = learner.predict_taw(task.x_test, task.index) + task.offset
                units = relevance_batch(modified, learner.model, task.x_test, rows).units
            for i, r in enumerate(units):
                per_layer[i].append(r.detach().numpy())
    starts = np.cumsum([0] + [len(t.x_test) for t in digits_tasks])
    assert found.names == [layer.name for layer in learner.model.unit_layers]
    for images, values, parts in zip(found.images, found.relevance, per_layer):
        recomputed = np.concatenate(parts)                  # (all test images, units)
        best = np.sort(recomputed, axis=0)[::-1][:3].T      # (units, 3)
        filled = images[..., 0] >= 0
        assert np.array_equal(filled, best > 0) and (values[~filled] == 0).all()
        assert np.allclose(values[filled], best[filled], rtol=1e-4, atol=1e-6)
        units = np.nonzero(filled)[0]
        picked = recomputed[starts[images[filled][:, 0]] + images[filled][:, 1], units]
        assert np.allclose(picked, values[filled], rtol=1e-4, atol=1e-6)
        assert (np.diff(values, axis=1) <= 1e-7).all()


def test_method_without_masks(finetune_run, digits_tasks):
    learner = finetune_run.learner
    assert learner.ownership is None and learner.task_masks(0) is None
    x = digits_tasks[0].x_test[:1]
    path = explain_pathway(learner, x, 0, units=[None, np.arange(64), np.arange(256)])
    assert all((layer.owner == -1).all() and layer.kept.all() for layer in path.layers)
    predicted = int(learner.predict_taw(x, 0)[0])
    assert path.target == predicted and len(path.layers[0].top) == 6
    # without masks the hooks sit on the layers' own outputs: completeness must hold there too
    assert close(path.layers[1].heatmaps.sum(0), path.heatmap)
    assert close(path.layers[1].flow.sum(0), path.layers[0].relevance)
    assert close(path.layers[2].flow.sum(0), path.layers[1].relevance)
    assert path.health.ok, path.health.warning
    found = unit_references(learner, digits_tasks, per_unit=2)
    assert [v.shape for v in found.relevance] == [(n, 2) for n in learner.model.layer_sizes()]
    assert all(i.shape[-1] == 2 for i in found.images)


def test_resnet_skip_paths_and_a_missing_canonizer(digits, digits_tasks, monkeypatch):
    """ResNet-18: a unit's conditional heatmap holds no relevance from around its block, so the
    units of a layer inside a block add up to what passes through that layer (not a cut). Without
    the ResNet canonizer, the sum rule of lrp_ops keeps the residual sums conservative on its own;
    without both, the skip connections double the relevance at each block: health says so."""
    model = build_model("resnet18", digits.input_shape, 6)
    learner = make_learner(model, TrainConfig(method="finetune", arch="resnet18", device="cpu"))
    learner.tasks = [t.spec for t in digits_tasks]
    x = digits_tasks[0].x_test[:1]
    names = [layer.name for layer in model.unit_layers]
    units = [None] * len(names)
    units[names.index("layer1.0.conv2")] = np.arange(64)
    path = explain_pathway(learner, x, 0, top_units=1, units=units)
    inside = path.layers[names.index("layer1.0.conv2")]
    assert path.layers[0].cut and not inside.cut
    assert close(inside.heatmaps.sum(0), inside.through)
    assert path.health.ok, path.health.warning

    def no_canonizers(model):
        return []

    monkeypatch.setattr(lrp_rules, "canonizers_for", no_canonizers)
    summed = explain_pathway(learner, x, 0, top_units=1)
    assert summed.health.ok, summed.health.warning
    monkeypatch.setattr(relevance, "operations_for", lambda model: contextlib.nullcontext())
    broken = explain_pathway(learner, x, 0, top_units=1)
    assert not broken.health.ok and "canonizer" in broken.health.warning


def test_chosen_layers_are_joined_to_each_other(digits, digits_tasks):
    """With ``layers``, only those layers get rows: each one's flows reach the next chosen layer
    below it (skipping the others); a chosen layer's unit heatmaps are those of the full pathway."""
    model = build_model("resnet18", digits.input_shape, 6)
    learner = make_learner(model, TrainConfig(method="finetune", arch="resnet18", device="cpu"))
    learner.tasks = [t.spec for t in digits_tasks]
    x = digits_tasks[0].x_test[:1]
    full = explain_pathway(learner, x, 0, top_units=3)
    part = explain_pathway(learner, x, 0, top_units=3, layers=[2, 9, 19])
    assert [layer.shown for layer in part.layers].count(True) == 3
    assert (part.layers[9].below, part.layers[19].below, part.layers[2].below) == (2, 9, None)
    assert not part.layers[5].shown and len(part.layers[5].top) == 0
    for i in (2, 9, 19):
        assert np.array_equal(part.layers[i].top, full.layers[i].top)
        assert close(part.layers[i].heatmaps, full.layers[i].heatmaps)
    gaps = {(e.lower, e.upper) for e in part.edges if e.upper < len(part.layers)}
    assert gaps == {(INPUT, 2), (2, 9), (9, 19)}
    assert part.layers[9].flow.shape == (3, model.layer_sizes()[2])
    with pytest.raises(UserError, match="layers to show"):
        explain_pathway(learner, x, 0, layers=[0, 99])


def test_health_judges_conservation():
    names, units = ["conv1", "fc1"], [np.array([1.0, 0.9]), np.array([1.5, 0.4])]
    healthy = check_health(names, units, 1.9, logit=2.0, bias=0.1)
    assert healthy.ok and healthy.warning == ""
    assert [h.name for h in healthy.layers] == ["fc1", "conv1", "input"]
    assert np.isclose(healthy.layers[0].ratio, 0.95)
    # bias absorption may take almost everything: not a breakage
    assert check_health(names, [u * 0.01 for u in units], 0.019, logit=2.0).ok
    flipped = check_health(names, [-u for u in units], -1.9, logit=2.0)
    assert not flipped.ok and "opposite sign" in flipped.warning
    grown = check_health(names, [u * 5 for u in units], 9.5, logit=2.0)
    assert not grown.ok and "duplicated" in grown.warning
    # a logit that is a small difference of large contributions: biases may tip the sign
    tipped = [np.array([0.015, 0.005]), np.array([-0.002, 0.0005])]
    assert "opposite sign" in check_health(names, tipped, 0.02, logit=0.031, bias=0.0325).warning
    assert check_health(names, tipped, 0.02, logit=0.031, bias=0.0325, contributions=0.5).ok
    assert "Flat" in check_health(names, units, 1.0, logit=2.0).warning
    assert "not finite" in check_health(names, [units[0], units[1] * np.nan], 1.9, logit=2.0).warning
    # a layer that is not a cut is reported but not judged
    assert check_health(names, [units[0], units[1] * 10], 1.9, logit=2.0, cuts=[True, False]).ok


def test_bad_requests_are_user_errors(digits_run, digits_tasks):
    learner, x = digits_run.learner, digits_tasks[0].x_test
    cases = [((x[:2], 0), "exactly one image"), ((x[:1], 3), "not a task"), ((x[:1], 0, 6), "not a class"),
             ((x[:1, :, :4], 0), "shaped"), ((x[:1], 0, None, 0), "top_units")]
    for args, message in cases:
        with pytest.raises(UserError, match=message):
            explain_pathway(learner, *args)
    with pytest.raises(UserError, match="one entry per unit layer"):
        explain_pathway(learner, x[:1], 0, units=[[0]])
    with pytest.raises(UserError, match="indices from 0 to 31"):
        explain_pathway(learner, x[:1], 0, units=[[32], None, None])
    with pytest.raises(UserError, match="per_unit"):
        unit_references(learner, digits_tasks, per_unit=0)


def test_demo_run_pathway():
    """The bundled MNIST-5k run: test image 0 of task 2 through task 2's subnetwork (the sketch)."""
    run = load_run(DEMO, device="cpu")
    tasks = make_tasks(load_dataset("mnist5k"), run.split)
    path = explain_pathway(run.learner, tasks[2].x_test[:1], 2, classes=True)
    assert path.target == path.predicted == 4 and path.health.ok
    assert [layer.name for layer in path.layers] == ["conv1", "conv2", "fc1"]
    assert all(len(layer.top) == 6 for layer in path.layers)
    owners = [layer.owner[layer.top] for layer in path.layers]
    assert all(((o >= 0) & (o <= 2)).all() for o in owners)
    # the ReReLRP story: task 2 also decides with units that earlier tasks froze
    assert (owners[0] < 2).any()
    for layer in path.layers:
        share = np.abs(layer.relevance[layer.top]).sum() / np.abs(layer.relevance).sum()
        assert share > 0.8
