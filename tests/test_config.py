"""Every training option has its range checked where the config is built: the same one-sentence
error from the Python API, the command line and the Train page, before any work starts."""
import subprocess
import sys
from dataclasses import fields

import pytest

from rerelrp_core.cli import main
from rerelrp_core.config import TrainConfig, make_config
from rerelrp_core.errors import UserError

# every option, with values out of its range (a new option without an entry here fails the walk)
BAD = {
    "method": ["sgd", ""], "epochs": [0, -1, 2.5], "batch_size": [0, -8],
    "lr": [-1, 0, float("nan"), float("inf")], "momentum": [-0.1, 1.0], "weight_decay": [-1e-4],
    "patience": [0], "lr_decay": [0, 1.5], "max_decays": [-1], "loss_scope": ["all"],
    "acc_drop": [-5, 101, float("nan")], "ref_per_class": [0], "max_keep_fraction": [0, 1.5, -0.2],
    "max_claim_fraction": [0, 1.01, None], "claim_cap_tolerance": [-1, 101, None], "augment": ["flip", None],
    "reg_strength": [-1.0], "memory": [-3, 0], "reinit_free": ["yes", 1], "keep_snapshots": [1],
    "relevance_batch": [0], "recognition": [{"top_k": -1}, {"chain": "loop"}, {"trees": 0}, {"bogus": 1},
                                            {"context": "yes"}, {"volume": -0.1}, {"volume": "big"}, "ours"],
    "seed": [-1, 1.5], "device": ["gpu", "cuda:x"], "weights": ["", 3], "input_size": [4, 32.5],
    "arch": ["mlp", "resnet.py", 5],
}


def test_every_option_has_out_of_range_values_here():
    assert set(BAD) == {f.name for f in fields(TrainConfig)}


@pytest.mark.parametrize("name, value", [(n, v) for n, values in BAD.items() for v in values])
def test_out_of_range_values_are_refused_with_one_sentence(name, value):
    with pytest.raises(UserError) as error:
        TrainConfig(**{name: value})
    message = str(error.value)
    assert name in message or "ecognition" in message, message
    assert message.count("\n") == 0 and message.endswith("."), message


def test_defaults_and_presets_are_valid():
    assert TrainConfig() == make_config()
    assert make_config(recognition="faithful").recognition["context"] is False
    assert make_config(epochs=None, lr=None) == TrainConfig()      # left empty: the default
    with pytest.raises(UserError, match=r"recognition \(--recognition\) must be one of faithful, forest, "
                                        r"subnetwork, ours; got .best."):
        make_config(recognition="best")


def test_acc_drop_defaults_to_the_recognition_kinds_own_and_a_given_one_wins():
    """0.25 with class Gaussians (ours), the paper's 1 with the forests (so the faithful preset stays the
    paper's); resolved when the config is made, so a saved run names the number it used."""
    assert TrainConfig().acc_drop == make_config().acc_drop == 0.25
    assert make_config(recognition="faithful").acc_drop == make_config(recognition="forest").acc_drop == 1.0
    assert make_config(recognition="faithful", acc_drop=3).acc_drop == TrainConfig(acc_drop=3).acc_drop == 3
    assert TrainConfig.from_dict(make_config(recognition="faithful").to_dict()).acc_drop == 1.0


@pytest.mark.parametrize("flag, value, option", [
    ("--epochs", "0", "epochs"), ("--lr", "-1", "lr"), ("--batch-size", "0", "batch_size"),
    ("--ref-per-class", "0", "ref_per_class"), ("--acc-drop", "-5", "acc_drop"), ("--memory", "-3", "memory"),
    ("--max-keep-fraction", "2", "max_keep_fraction"),
    ("--max-claim-fraction", "0", "max_claim_fraction"), ("--reg-strength", "-1", "reg_strength"),
    ("--seed", "-1", "seed"), ("--device", "gpu", "device"), ("--lr", "nan", "lr")])
def test_command_line_refuses_bad_options_before_any_work(tmp_path, capsys, flag, value, option):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--tasks", "2", flag, value, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"Option {option} ({flag})" in err and value in err, err
    assert "Traceback" not in err and not out.exists()


def test_a_real_process_ends_with_one_sentence():
    result = subprocess.run([sys.executable, "-m", "rerelrp_core", "train", "--dataset", "digits",
                             "--lr", "-1", "--out", "unused"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: Option lr (--lr) must be a number greater than 0; got -1.0."
