"""The command line end to end on real data, and its one-sentence errors."""
import json
import subprocess
import sys

import pytest

KEYS = {"config", "acc_taw", "avg_acc_taw", "forgetting_taw", "acc_tag", "avg_acc_tag", "forgetting_tag",
        "timing_s", "stored_bytes_per_task", "capacity"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "rerelrp_core", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("method", ["rerelrp", "finetune", "joint"])
def test_train_on_digits_end_to_end(tmp_path, method):
    out = tmp_path / "run"
    result = cli("train", "--dataset", "digits", "--tasks", "5", "--method", method, "--epochs", "3",
                 "--seed", "0", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "avg TAw" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert KEYS <= set(metrics)
    assert [len(row) for row in metrics["acc_taw"]] == [1, 2, 3, 4, 5]
    assert set(metrics["timing_s"]) == {"train", "consolidate", "evaluate"}
    if method == "rerelrp":
        assert metrics["forgetting_taw"] == 0.0
        assert len(metrics["capacity"]) == 5 and all(0 <= f <= 1 for f in metrics["capacity"][-1].values())
    shown = cli("show", str(out))
    assert shown.returncode == 0 and "avg TAw" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "cifar-1000", "--out", "x"], "Unknown dataset 'cifar-1000'"),
    (["train", "--dataset", "digits", "--tasks", "3", "--out", "x"], "cannot be split evenly into 3 tasks"),
    (["train", "--dataset", "digits", "--tasks", "2", "--classes-per-task", "5", "6", "--out", "x"],
     "does not fit"),
    (["train", "--dataset", "folder:/nonexistent", "--out", "x"], "does not exist"),
    (["show", "/tmp"], "not a run folder"),
])
def test_bad_input_is_one_clear_sentence(args, message, tmp_path):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
