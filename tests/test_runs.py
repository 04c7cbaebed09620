"""Runs saved and loaded predict identically; damaged or foreign folders give clear errors."""
import json

import pytest
import torch

from rerelrp_core.errors import UserError
from rerelrp_core.explain import explain_image
from rerelrp_core.runs import load_run, save_run


def test_saved_run_predicts_identically(digits_run, digits_tasks, tmp_path):
    save_run(digits_run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.metrics["acc_taw"] == digits_run.metrics["acc_taw"]
    for task in digits_tasks:
        assert torch.equal(loaded.learner.predict_taw(task.x_test, task.index),
                           digits_run.learner.predict_taw(task.x_test, task.index))
        assert torch.equal(loaded.learner.predict_tag(task.x_test),
                           digits_run.learner.predict_tag(task.x_test))
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["learner.safetensors", "metrics.json", "model.safetensors", "outcomes.safetensors",
                     "run.json"]


def test_overwrite_is_atomic_and_leaves_no_temporaries(digits_run, tmp_path):
    save_run(digits_run, tmp_path / "run")
    save_run(digits_run, tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        load_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a run folder"):
        save_run(object(), tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "run.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "run.json").write_text(json.dumps({"format": "other"})), "not a ReReLRP run"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\0" * 10), "damaged or does not fit"),
    (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda d: (d / "learner.safetensors").write_bytes(b"junk"), "learner.safetensors"),
])
def test_damaged_run_files(digits_run, tmp_path, damage, message):
    save_run(digits_run, tmp_path / "run")
    damage(tmp_path / "run")
    with pytest.raises(UserError, match=message):
        load_run(tmp_path / "run")


def test_run_for_another_model(digits_run, tmp_path):
    save_run(digits_run, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    state["config"]["arch"] = "vgg11"
    (tmp_path / "run" / "run.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match="does not fit a 'vgg11' model"):
        load_run(tmp_path / "run")


def test_run_saved_before_recognition_existed_still_opens(digits_forest_run, digits_tasks, tmp_path):
    """Without recognisers and relevance features a run falls back to plain argmax for TAg (such
    runs were saved when the forests were the only recognisers)."""
    from safetensors.torch import load_file, save_file
    digits_run = digits_forest_run
    save_run(digits_run, tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "learner.safetensors"))
    save_file({k: v for k, v in tensors.items() if k.startswith("mask.")},
              str(tmp_path / "run" / "learner.safetensors"))
    loaded = load_run(tmp_path / "run")
    assert loaded.learner.recogniser is None and not loaded.learner.can_recognise()
    x = digits_tasks[0].x_test
    assert torch.equal(loaded.learner.predict_taw(x, 0), digits_run.learner.predict_taw(x, 0))
    assert loaded.learner.predict_tag(x).shape == (len(x),)
    with pytest.raises(UserError, match="no task recognisers"):
        loaded.learner.recognise(x[:2])
    assert explain_image(loaded, x[:1])["task_probs"] is None
    # going on with it (a resumed run's next task) says why it cannot, instead of a KeyError
    with pytest.raises(UserError, match="saved before task recognition existed"):
        loaded.learner.train_task(digits_tasks[2])


def edit_state(change):
    def damage(folder):
        state = json.loads((folder / "run.json").read_text())
        change(state)
        (folder / "run.json").write_text(json.dumps(state))
    return damage


@pytest.mark.parametrize("change, message", [
    (lambda s: s["learner"].update(tasks_seen=2), "has seen 2 tasks but the history holds 3"),
    (lambda s: s["learner"].update(tasks_seen="3"), "number of seen tasks"),
    (lambda s: s["learner"].update(timing={"train": "fast"}), "timing"),
    (lambda s: s["learner"].pop("timing"), "timing"),
    (lambda s: s.update(version=0), "unknown format version"),
    (lambda s: s["tasks"][1].update(offset=5), "task 1 has index 1 and offset 5; expected 1 and 2"),
    (lambda s: s["tasks"][2].update(index=7), "task 2 has index 7"),
    (lambda s: s["tasks"][0].update(offset=-1), "negative offset"),
])
def test_inconsistent_run_json_is_refused_clearly(digits_run, tmp_path, change, message):
    save_run(digits_run, tmp_path / "run")
    edit_state(change)(tmp_path / "run")
    with pytest.raises(UserError, match=message):
        load_run(tmp_path / "run")
