"""Task recognition with the relevance forests: batched subnetworks, chain probabilities,
near-perfect recognition of easily separable tasks, no images in saved runs, and clear errors."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rerelrp_core.data import SplitConfig
from rerelrp_core.errors import UserError
from rerelrp_core.explain import explain_image
from rerelrp_core.recognition import chain_probabilities
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence
from rerelrp_core.subnetworks import subnetwork_pass

from conftest import save_with_damaged_tensor, small_config


@pytest.fixture(scope="module")
def digits_run(digits_forest_run):
    """This file tests the relevance-forest recognisers: its run uses them."""
    return digits_forest_run


def test_batched_pass_equals_each_subnetwork_alone(digits_run, digits_tasks):
    learner = digits_run.learner
    x = digits_tasks[1].x_test[:20]
    together = learner.subnetworks(x, want_input=True)
    for m in range(3):
        alone = subnetwork_pass(learner.model, learner.stacked_task_masks([m]), [learner.tasks[m]], x,
                                batch_size=7, want_input=True)
        for field in ("features", "logits", "heatmaps"):
            # batches of other sizes sum in another order: a pixel's relevance near 0 may differ by
            # about 1e-6 (seen on a fresh machine), against relevance that sums to the logit (about 10)
            torch.testing.assert_close(getattr(together, field)[m], getattr(alone, field)[0],
                                       rtol=1e-4, atol=1e-5)
        assert torch.equal(together.predictions[m], alone.predictions[0])
        # the same as plain task-aware prediction through subnetwork m
        assert torch.equal(together.predictions[m], learner.predict_taw(x, m))


@pytest.mark.parametrize("chain", ["chain", "chain-full"])
def test_chain_probabilities_sum_to_one(chain):
    p = np.random.default_rng(0).random((50, 4))
    probs = chain_probabilities(p, chain)
    assert probs.shape == (50, 5) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(chain_probabilities(np.array([[0.9, 0.3]]))[0], [0.9, 0.1 * 0.3, 0.1 * 0.7])


def test_recognise_outputs(digits_run, digits_tasks):
    learner = digits_run.learner
    x = torch.cat([t.x_test[:10] for t in digits_tasks])
    result = learner.recognise(x)
    np.testing.assert_allclose(result["task_probs"].sum(1), 1.0)
    assert result["within"].shape == (3, 30) and result["predicted"].shape == (30,)
    assert torch.equal(result["task"], torch.from_numpy(result["task_probs"].argmax(1)))
    explanation = learner.explain_task(result, row=0)
    assert len(explanation) == 2 and explanation[1]["probability"] == result["recogniser_probs"][0, 1]
    top = explanation[0]["features"][0]
    assert top["layer"] in {"conv1", "conv2", "fc1"} and isinstance(top["unit"], int)


def test_easily_separable_tasks_recognised_near_perfectly(digits):
    """Digits {0, 1} versus {6, 7} differ in shape everywhere: recognition should be near perfect."""
    split = SplitConfig(n_tasks=2, classes_per_task=[2, 2], class_order=[0, 1, 6, 7])
    run = train_sequence(digits, split, small_config())
    assert run.metrics["task_recognition_acc"] >= 95.0, run.metrics["task_recognition_acc"]
    assert run.metrics["avg_acc_tag"][-1] >= 90.0


def test_saved_run_holds_no_images(digits_run, digits, tmp_path):
    save_run(digits_run, tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "learner.safetensors"))
    units = sum(digits_run.learner.ownership.layer_sizes)
    for name, tensor in tensors.items():
        kind = name.split(".")[0]
        assert kind in {"mask", "features", "logits", "columns", "selected", "ranking"}, name
        if kind in ("mask", "columns", "selected"):
            assert tensor.dim() == 1, name
        elif kind == "ranking":    # one relevance value per unit (the pruning curve's order)
            assert tuple(tensor.shape) == (units,), name
        elif kind == "features":   # at most one value per unit, only the units recognisers read
            assert (tensor.dim() == 2
                    and tensor.shape[1] == len(tensors[name.replace("features", "columns")])), name
            assert tensor.shape[1] < units, name
        else:
            assert tensor.dim() == 2 and tensor.shape[1] == 2, name         # one value per class
    loaded = load_run(tmp_path / "run")
    test = digits.x_test[:64]
    assert torch.equal(loaded.learner.predict_tag(test), digits_run.learner.predict_tag(test))
    np.testing.assert_allclose(loaded.learner.recognise(test)["task_probs"],
                               digits_run.learner.recognise(test)["task_probs"])


def downgrade_to_version_1(folder):
    """Rewrite a saved run's run.json as format version 1 wrote it (heads and timing at the top)."""
    state = json.loads((folder / "run.json").read_text())
    seen = state["learner"].pop("tasks_seen")
    state.update(version=1, timing=state["learner"].pop("timing"),
                 heads=[[t["offset"], len(t["classes"])] for t in state["tasks"][:seen]])
    (folder / "run.json").write_text(json.dumps(state))


def test_keeping_only_read_columns_changes_no_prediction(digits_run, digits_tasks, tmp_path):
    """Rebuild the run as it was stored before column-only storage (every unit's value through every
    subnetwork, no column lists): it must recognise every test image exactly as the compact run."""
    learner = digits_run.learner
    recogniser = learner.recogniser
    save_run(digits_run, tmp_path / "run")
    downgrade_to_version_1(tmp_path / "run")
    path = tmp_path / "run" / "learner.safetensors"
    tensors = {name: t for name, t in load_file(str(path)).items()
               if name.split(".")[0] not in ("columns", "selected")}
    for task in digits_tasks:
        x = learner.recognition_samples(task)
        full = learner.subnetworks(x, range(task.index + 1))
        for m in range(task.index + 1):
            assert torch.equal(full.features[m].half()[:, recogniser.features[(m, task.index)][2]],
                               tensors[f"features.m{m}.t{task.index}"])
            tensors[f"features.m{m}.t{task.index}"] = full.features[m].half()
    save_file(tensors, str(path))
    old = load_run(tmp_path / "run").learner
    for m, columns in recogniser.selected.items():
        assert np.array_equal(old.recogniser.selected[m], columns)
    x = torch.cat([t.x_test for t in digits_tasks])
    np.testing.assert_array_equal(old.recognise(x)["task_probs"], learner.recognise(x)["task_probs"])
    # opening the old run drops the unread columns: the same values as the compact run
    for key, (values, logits, columns) in recogniser.features.items():
        assert torch.equal(old.recogniser.features[key][0], values)
        assert torch.equal(old.recogniser.features[key][2], columns)
    full = sum(t.numel() * 2 for name, t in tensors.items() if name.startswith("features."))
    assert sum(learner.stored_parts(k)["relevance values"] for k in range(3)) < full / 2


@pytest.mark.parametrize("name, bad", [("columns.m0.t1", lambda t: t + 10_000),
                                       ("columns.m1.t2", lambda t: t[:-1]),
                                       ("selected.r0", lambda t: t - 10_000),
                                       ("selected.r0", lambda t: t.flip(0)),
                                       ("selected.r1", None)])
def test_damaged_column_lists_are_refused(digits_run, tmp_path, name, bad):
    save_with_damaged_tensor(digits_run, tmp_path / "run", name, bad)
    with pytest.raises(UserError, match="wrong shape|missing or out of range"):
        load_run(tmp_path / "run")


def test_bad_inputs(digits_run):
    learner = digits_run.learner
    with pytest.raises(UserError, match=r"shaped \(N, 1, 8, 8\)"):
        learner.recognise(torch.zeros(2, 3, 8, 8))
    with pytest.raises(UserError, match=r"at least one image .* got \(0, 1, 8, 8\)"):
        learner.recognise(torch.zeros(0, 1, 8, 8))
    with pytest.raises(UserError, match="exactly one image"):
        explain_image(digits_run, torch.zeros(2, 1, 8, 8))
