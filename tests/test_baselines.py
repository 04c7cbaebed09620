"""EWC, LwF, iCaRL and replay on the same engine: they run, save and load, and behave as their idea says."""
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from rerelrp_core.errors import UserError
from rerelrp_core.learners import accuracy
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence

from conftest import small_config


@pytest.fixture(scope="module")
def runs(digits, digits_split):
    # every method at its defaults (EWC's lambda 50,000 diverged here before its stiffness cap)
    return {method: train_sequence(digits, digits_split, small_config(method=method, epochs=5, memory=120))
            for method in ("finetune", "ewc", "lwf", "icarl", "replay")}


@pytest.mark.parametrize("method", ["ewc", "lwf", "icarl", "replay"])
def test_baseline_saves_and_loads(runs, method, digits_tasks, tmp_path):
    run = runs[method]
    assert len(run.metrics["acc_taw"]) == 3
    save_run(run, tmp_path / method)
    loaded = load_run(tmp_path / method)
    for task in digits_tasks:
        assert torch.equal(loaded.learner.predict_taw(task.x_test, task.index),
                           run.learner.predict_taw(task.x_test, task.index))
        assert torch.equal(loaded.learner.predict_tag(task.x_test), run.learner.predict_tag(task.x_test))


def test_icarl_buffer_is_bounded_balanced_and_helps(runs):
    learner = runs["icarl"].learner
    sizes = [len(images) for images in learner.exemplars.values()]
    assert sum(sizes) <= 120 and set(sizes) == {20}            # 120 images over 6 classes
    assert runs["icarl"].metrics["avg_acc_tag"][-1] > runs["finetune"].metrics["avg_acc_tag"][-1] + 10
    assert runs["icarl"].metrics["stored_bytes_per_task"][0] >= 40 * 64   # 40 stored 8x8 images


def test_replay_buffer_is_balanced_mixed_into_batches_and_helps(runs, digits_tasks):
    learner = runs["replay"].learner
    sizes = [len(images) for images in learner.exemplars.values()]
    assert sum(sizes) <= 120 and set(sizes) == {20}
    assert runs["replay"].metrics["avg_acc_tag"][-1] > runs["finetune"].metrics["avg_acc_tag"][-1] + 10
    # the stored images are real training images of their own class
    task = digits_tasks[0]
    for c in range(task.n_classes):
        stored = learner.exemplars[task.offset + c].flatten(1)
        train = task.x_train[task.y_train == c].flatten(1)
        assert (torch.cdist(stored, train).min(1).values == 0).all()
    x, rows = task.x_train[:8], task.y_train[:8]
    learner.before_task(digits_tasks[-1])
    mixed_x, mixed_rows = learner.mix_batch(x, rows)
    assert len(mixed_x) == 16 and torch.equal(mixed_x[:8], x) and torch.equal(mixed_rows[:8], rows)
    for image, row in zip(mixed_x[8:], mixed_rows[8:]):
        assert any(torch.equal(image, kept) for kept in learner.exemplars[int(row)])


def test_regularisers_are_active(runs):
    ewc = runs["ewc"].learner
    assert ewc.fisher is not None and any(float(f.sum()) > 0 for f in ewc.fisher)
    lwf = runs["lwf"].learner
    assert lwf.old_model is not None and lwf.old_rows == 4     # distils rows of tasks 0 and 1


def test_scoring_on_validation_never_touches_the_test_split(digits, digits_split, digits_tasks):
    """bench/tune.py chooses hyperparameters with evaluate_on="validation": every score must be the
    validation images' accuracy."""
    run = train_sequence(digits, digits_split, small_config(method="finetune", epochs=2),
                         evaluate_on="validation")
    learner = run.learner
    for task in digits_tasks:
        expected = accuracy(learner.predict_taw(task.x_val, task.index), task.y_val)
        assert run.metrics["acc_taw"][-1][task.index] == pytest.approx(expected, abs=1e-3)
        assert sum(run.metrics["task_confusion"][task.index]) == len(task.x_val) != len(task.x_test)
    with pytest.raises(UserError, match="evaluate_on"):
        train_sequence(digits, digits_split, small_config(method="finetune"), evaluate_on="train")


def test_icarl_keeps_8_bit_images_as_bytes_and_refuses_damaged_ones(digits, digits_split, tmp_path):
    """Images read from 8-bit files are stored as uint8 (what stored_bytes counts) and come back
    bit-exact; exemplars that do not fit the run are refused with a clear message."""
    eight_bit = replace(digits, x_train=torch.round(digits.x_train * 255) / 255,
                        x_test=torch.round(digits.x_test * 255) / 255)
    run = train_sequence(eight_bit, digits_split, small_config(method="icarl", epochs=1, memory=60))
    save_run(run, tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "learner.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.uint8}
    stored_images = sum(run.metrics["stored_parts_per_task"][k]["images"] for k in range(3))
    assert sum(t.numel() for t in tensors.values()) == stored_images
    loaded = load_run(tmp_path / "run").learner
    for row, images in run.learner.exemplars.items():
        assert torch.equal(loaded.exemplars[row], images)
    tensors["exemplars.0"] = tensors["exemplars.0"][:, :, :4].contiguous()
    save_file(tensors, str(tmp_path / "run" / "learner.safetensors"))
    with pytest.raises(UserError, match="exemplar images 'exemplars.0' do not fit"):
        load_run(tmp_path / "run")


def test_ewc_counts_its_fisher_and_refuses_a_damaged_one(runs, tmp_path):
    run = runs["ewc"]
    parts = run.metrics["stored_parts_per_task"]
    assert "fisher + anchor" in parts[-1] and all("fisher + anchor" not in p for p in parts[:-1])
    save_run(run, tmp_path / "run")
    path = tmp_path / "run" / "learner.safetensors"
    assert path.stat().st_size >= parts[-1]["fisher + anchor"]
    tensors = load_file(str(path))
    del tensors["anchor.1"]
    save_file(tensors, str(path))
    with pytest.raises(UserError, match="EWC anchor tensors are missing"):
        load_run(tmp_path / "run")


@pytest.mark.parametrize("dataset_name, arch, epochs", [("digits", "cnn", 10), ("mnist5k", "cnn-small", 3)])
def test_ewc_defaults_train_where_they_diverged_before(dataset_name, arch, epochs):
    """EWC's default strength made SGD diverge on these ("Training diverged in task 1": the
    penalty's stiffness beyond 2 / lr); with the cap at 1 / lr every task trains."""
    from rerelrp_core.data import SplitConfig, load_dataset
    dataset = load_dataset(dataset_name)
    split = SplitConfig(n_tasks=3, classes_per_task=[2, 2, 2], seed=0)
    ewc = train_sequence(dataset, split, small_config(method="ewc", arch=arch, epochs=epochs))
    assert all(torch.isfinite(p).all() for p in ewc.model.parameters())
    assert min(ewc.metrics["acc_taw"][t][t] for t in range(3)) > 80     # each task learned when it came
