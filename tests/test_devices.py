"""The device a run was trained on is a preference: a run saved on a GPU opens on a machine without
one (saying so), an explicit request is checked, and GPU indices are checked against the machine."""
import json

import pytest
import torch

from rerelrp_core.cli import main
from rerelrp_core.errors import UserError
from rerelrp_core.learners import Cancelled, preferred_device, resolve_device
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence

from conftest import small_config

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


@pytest.fixture()
def saved(digits_run, tmp_path):
    save_run(digits_run, tmp_path / "run")
    return tmp_path / "run"


def trained_on(folder, device):
    state = json.loads((folder / "run.json").read_text())
    state["config"]["device"] = device
    (folder / "run.json").write_text(json.dumps(state))


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cuda:7"])
def test_a_gpu_run_opens_on_the_cpu_and_says_why(saved, digits_tasks, digits_run, device, capsys):
    trained_on(saved, device)
    run = load_run(saved)
    assert run.learner.device == torch.device("cpu") and run.config.device == device   # kept as a preference
    assert device in run.device_note and "opens on the CPU" in run.device_note
    x = torch.cat([t.x_test for t in digits_tasks])
    assert torch.equal(run.learner.predict_tag(x), digits_run.learner.predict_tag(x))
    assert main(["show", str(saved)]) == 0
    err = capsys.readouterr().err
    assert "opens on the CPU" in err and "Traceback" not in err
    with pytest.raises(UserError, match="no GPU is available"):      # asked for now: it must exist
        load_run(saved, device="cuda")
    assert load_run(saved, device="cpu").device_note is None


@no_gpu
def test_resume_of_a_gpu_run_goes_on_on_the_cpu(digits, digits_split, tmp_path, capsys):
    out = tmp_path / "run"
    finished = []

    def checkpoint(run):
        save_run(run, out)
        finished.append(run.tasks_done)

    with pytest.raises(Cancelled):      # interrupted after task 0: its checkpoint is on disk
        train_sequence(digits, digits_split, small_config(epochs=1), on_task_end=checkpoint,
                       should_stop=lambda: bool(finished))
    trained_on(out, "cuda")
    assert main(["train", "--dataset", "digits", "--resume", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "opens on the CPU" in err and "1 of 3 tasks finished" in err
    assert load_run(out).tasks_done == 3


def test_gpu_indices_are_checked_against_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(UserError, match="cuda:7 was requested but this machine has 2 GPU"):
        resolve_device("cuda:7")
    device, note = preferred_device("cuda:7")
    assert device == torch.device("cpu") and "2 GPU(s) here" in note
    assert preferred_device("cuda:1") == (torch.device("cuda:1"), None)


def cuda_flags():
    return (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(), torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32)


def test_cuda_trainings_run_deterministic_kernels_and_put_the_flags_back():
    from rerelrp_core.seeding import deterministic
    torch.backends.cuda.matmul.allow_tf32 = True
    before = cuda_flags()
    try:
        with deterministic("cpu"):
            assert cuda_flags() == before                       # the CPU needs nothing
        with deterministic("cuda"):
            with deterministic("cuda:0"):                       # a second training at the same time
                assert cuda_flags() == (True, False, True, False, False)
            assert cuda_flags() == (True, False, True, False, False)    # the first still holds them
        assert cuda_flags() == before
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def test_lrp_runs_in_plain_float32(digits_run, digits_tasks):
    from rerelrp_core.relevance import lrp_context
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with lrp_context(digits_run.learner.replica().model):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
