"""Task recognition from class Gaussians (the default): right numbers, constant state per task that
never changes after its task, exact save and load, clear errors on damaged statistics."""
import copy
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from rerelrp_core.class_gaussians import ClassGaussians
from rerelrp_core.cluster_gaussians import MIN_CLUSTER, clusters
from rerelrp_core.errors import UserError
from rerelrp_core.learners import accuracy
from rerelrp_core.recognition import recognition_config
from rerelrp_core.recognition_spaces import (
    InputSpace,
    SubnetworkSpace,
    projection,
    space_columns,
    unit_activations,
)
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence

from conftest import save_with_damaged_tensor, small_config


def test_default_recognises_by_class_gaussians_and_beats_the_forests(digits_run, digits_forest_run):
    assert isinstance(digits_run.learner.recogniser, ClassGaussians)
    gaussian, forest = digits_run.metrics, digits_forest_run.metrics
    assert gaussian["acc_taw"] == forest["acc_taw"]        # recognition changes nothing else
    assert gaussian["task_recognition_acc"] > forest["task_recognition_acc"]
    assert gaussian["avg_acc_tag"][-1] > forest["avg_acc_tag"][-1]


def _textbook_distance(own, x, shrink, volume):
    """Mahalanobis distance of ``x`` to the mean of ``own`` under its covariance normalised to mean
    variance s = 1 and shrunk towards the identity, plus ``volume`` · s · log det of that matrix."""
    covariance = torch.cov(own.T, correction=0)
    s = covariance.diagonal().mean()
    covariance = (1 - shrink) * covariance / s + shrink * torch.eye(len(covariance), dtype=covariance.dtype)
    centred = x - own.mean(0)
    return (centred @ torch.linalg.inv(covariance) * centred).sum(1) + volume * s * torch.logdet(covariance)


@pytest.mark.parametrize("components, volume, space", [
    (1, 0.0, "input"), (4, 0.0, "input"), (4, 0.5, "input"), (4, 0.5, "subnetwork")])
def test_distance_is_the_nearest_clusters_normalised_shrunk_mahalanobis_distance(digits_run, digits_tasks,
                                                                                 components, volume, space):
    """With every eigenvector kept, the stored statistics give the textbook distance to the nearest
    of a class's k-means clusters, under each cluster's covariance normalised to mean variance 1 and
    shrunk by ``shrink``, with its volume term (within 2 %: the eigenvectors are stored as int8)."""
    learner = copy.copy(digits_run.learner)
    config = recognition_config({"rank": 10_000, "shrink": 0.2, "components": components, "volume": volume,
                                 "space": space})
    learner.recogniser = recogniser = ClassGaussians(config)
    task = digits_tasks[0]
    recogniser.learn_task(learner, task)
    values = recogniser.features(learner, task.x_train)
    x = recogniser.features(learner, digits_tasks[1].x_test[:5])
    for c in range(task.n_classes):
        own = values[task.y_train == c]
        labels = clusters(own, components, seed=c)
        n_clusters = int(labels.max()) + 1
        assert (recogniser.classes[0] == c).sum() == n_clusters
        assert n_clusters == 1 if components == 1 else 1 < n_clusters <= components
        assert torch.bincount(labels).min() >= MIN_CLUSTER
        expected = torch.stack([_textbook_distance(own[labels == k], x, 0.2, volume)
                                for k in range(n_clusters)]).min(0).values
        torch.testing.assert_close(recogniser.distances(x)[:, c], expected, rtol=2e-2, atol=1e-6)


def test_input_space_is_the_input_averaged_over_cells_whatever_the_network(digits_run, digits_tasks):
    """The default space: each channel's cell means, signed square roots (power 0.5), projected when
    wider than ``width``; no network takes part, so it is the same whatever the class order."""
    x = digits_tasks[0].x_test[:5]
    assert torch.equal(digits_run.learner.recogniser.features(digits_run.learner, x),
                       x.flatten(1).double().sqrt())        # 8 x 8 digits: every pixel a cell
    images = torch.randn(3, 3, 28, 28)                       # normalised colour images: negative values too
    space = InputSpace(recognition_config({"input_grid": 14, "width": 128, "power": 0.5}))
    cells = images.reshape(3, 3, 14, 2, 14, 2).mean((3, 5)).flatten(1).double()
    expected = cells.sign() * cells.abs().sqrt() @ projection(3 * 14 * 14, 128)
    torch.testing.assert_close(space.features(None, images), expected)
    assert SubnetworkSpace(recognition_config({})).description != space.description


def test_subnetwork_space_is_subnetwork_0_activations_and_leaves_the_model_alone(digits_run, digits_tasks):
    learner = digits_run.learner
    x = digits_tasks[2].x_test[:4]
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    values = unit_activations(learner.model, learner.task_masks(0), x)
    assert all(layer.mask.recorded is None and layer.mask.mask is None for layer in learner.model.unit_layers)
    assert all(torch.equal(v, learner.model.state_dict()[k]) for k, v in before.items())
    columns = space_columns(learner.model, learner.ownership.task_masks[0])
    assert (values[:, ~columns] == 0).all()          # units task 0 pruned never fire in its subnetwork
    fc = learner.model.unit_layers[-1]
    with torch.no_grad(), learner.model.subnetwork(learner.task_masks(0)):
        hidden = learner.model.backbone(x)
    torch.testing.assert_close(values[:, -fc.n_units:].float(), hidden.relu())


def test_state_per_task_is_constant_and_never_changes_after_its_task(digits, digits_split):
    kept = []      # after every task: each finished task's statistics and stored bytes

    def snapshot(run):
        recogniser = run.learner.recogniser
        kept.append([([getattr(recogniser, name)[k].clone() for name in ("means", "vectors", "variances")],
                      run.learner.stored_parts(k)) for k in range(run.tasks_done)])

    train_sequence(digits, digits_split, small_config(), on_task_end=snapshot)
    for step in kept[1:]:
        for k, (tensors, parts) in enumerate(step):
            first_tensors, first_parts = kept[k][k]     # as saved right after task k
            assert parts == first_parts
            assert all(torch.equal(a, b) for a, b in zip(tensors, first_tensors))
    # at most `components` clusters per class, each of a size set by the space's width and the rank
    means, vectors = kept[-1][0][0][:2]
    width, rank, components = means.shape[1], vectors.shape[2], recognition_config({}).components
    per_cluster = 4 * width + width * rank + 4 * rank + 4 * (rank + width) + 8
    final = [parts["class means"] + parts["class covariances"] for _, parts in kept[-1]]
    assert all(2 * per_cluster <= size <= 2 * components * per_cluster for size in final)
    assert "relevance values" not in kept[-1][-1][1]


def test_predictions_are_the_recognised_subnetworks_own(digits_run, digits_tasks):
    learner = digits_run.learner
    x = torch.cat([t.x_test for t in digits_tasks])
    result = learner.recognise(x)
    assert torch.equal(result["predicted"], learner.predict_tag(x))
    sums = torch.as_tensor(result["task_probs"]).sum(1)
    torch.testing.assert_close(sums, torch.ones(len(x), dtype=sums.dtype))
    # the recognised task is always the most probable one, and confidently so when it is right
    probs = torch.as_tensor(result["task_probs"])
    assert torch.equal(probs.argmax(1), result["task"])
    right = result["task"] == torch.cat([torch.full((len(t.x_test),), t.index) for t in digits_tasks])
    assert probs.max(1).values[right].median() > 0.5
    for task in digits_tasks:
        mine = result["task"] == task.index
        own = learner.predict_taw(x[mine], task.index) + task.offset
        assert torch.equal(result["predicted"][mine], own)
    labels = torch.cat([torch.full((len(t.x_test),), t.index) for t in digits_tasks])
    assert accuracy(result["task"], labels) > 90
    why = learner.explain_task(learner.recognise(x[:1]))
    assert [w["task"] for w in why] == [0, 1, 2]
    assert min(why, key=lambda w: w["distance"])["task"] == int(result["task"][0])
    # the distance's two parts: one of the class's clusters' plain Mahalanobis distances (a copy of the
    # recogniser with volume 0 computes them) and that cluster's volume term, at most 0
    plain = copy.copy(learner.recogniser)
    plain.config, plain._clusters = replace(plain.config, volume=0.0), None
    mahalanobis = plain.cluster_distances(plain.features(learner, x[:1]))[0]
    classes = plain.stacked_clusters()[2]
    for w, spec in zip(why, learner.tasks):
        own = mahalanobis[classes == spec.offset + spec.class_names.index(w["class"])]
        assert torch.isclose(own, torch.tensor(w["mahalanobis"], dtype=own.dtype)).any()
        assert w["volume term"] < 0
        assert w["mahalanobis"] + w["volume term"] == pytest.approx(w["distance"])


def test_save_and_load_give_the_same_predictions(digits_run, digits_tasks, tmp_path):
    save_run(digits_run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    x = torch.cat([t.x_test for t in digits_tasks])
    assert torch.equal(loaded.learner.predict_tag(x), digits_run.learner.predict_tag(x))
    tensors = load_file(str(tmp_path / "run" / "learner.safetensors"))
    assert not any(name.startswith("features.") for name in tensors)     # no relevance vectors kept


@pytest.mark.parametrize("name, damage", [
    ("gaussians.means.t1", lambda t: t[:, :-1].contiguous()),
    ("gaussians.vectors.t0", lambda t: t.float()),
    ("gaussians.variances.t2", lambda t: -t),
    ("gaussians.means.t0", lambda t: t * float("nan")),
    ("gaussians.vectors.t2", None),
    ("gaussians.scales.t0", lambda t: t * float("inf")),
    ("gaussians.classes.t1", lambda t: torch.zeros_like(t)),      # a class without a cluster
    ("gaussians.classes.t2", None),
])
def test_damaged_statistics_are_refused(digits_run, tmp_path, name, damage):
    save_with_damaged_tensor(digits_run, tmp_path / "run", name, damage)
    with pytest.raises(UserError, match=f"class statistics of task {name[-1]} are missing or have the wrong"):
        load_run(tmp_path / "run")


@pytest.mark.parametrize("settings, message", [
    ({"kind": "knn"}, "kind must be one of gaussian, forest"),
    ({"shrink": 0}, "shrink must be a number above 0"),
    ({"power": -1}, "power must be a number above 0"),
    ({"rank": 0}, "rank must be a whole number of at least 1"),
    ({"space": "pixels"}, "space must be one of input, subnetwork"),
    ({"input_grid": 0}, "input_grid must be a whole number of at least 1"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        recognition_config(settings)
