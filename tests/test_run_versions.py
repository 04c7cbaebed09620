"""Every older run format opens and predicts exactly what the code that wrote it predicted
(fixture runs written by those versions, see tests/fixtures/make_fixture_v1.py)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from rerelrp_core.data import SplitConfig, load_digits, make_tasks
from rerelrp_core.errors import UserError
from rerelrp_core.runs import VERSION, load_run, save_run

FIXTURES = Path(__file__).parent / "fixtures" / "runs"


@pytest.mark.parametrize("name", ["v1-rerelrp", "v1-full-vectors", "v1-icarl", "v4-gaussians", "v5-clusters",
                                  "v7-rerelrp", "v8-rerelrp"])
def test_older_formats_open_and_predict_as_before(name, tmp_path):
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    run = load_run(FIXTURES / name)
    tasks = make_tasks(load_digits(), SplitConfig(n_tasks=2, classes_per_task=[2, 2], seed=0))
    for task in tasks:
        assert run.learner.predict_taw(task.x_test, task.index).tolist() == expected["taw"][task.index]
    x = torch.cat([t.x_test for t in tasks])
    assert run.learner.predict_tag(x).tolist() == expected["tag"]
    assert run.metrics["acc_tag"] == expected["acc_tag"]
    # format 1 was trained without the claim cap, and is resumed so
    assert run.config.max_claim_fraction == (1.0 if name.startswith("v1") else 0.75)
    # and the cap gave way at once before format 9
    assert run.config.claim_cap_tolerance == 0.0
    # class Gaussians saved before format 6 had no volume term
    assert name not in ("v4-gaussians", "v5-clusters") or run.learner.recogniser.config.volume == 0
    # and before format 9 in task 0's subnetwork
    assert name not in ("v4-gaussians", "v5-clusters", "v7-rerelrp", "v8-rerelrp") \
        or run.learner.recogniser.config.space == "subnetwork"
    # saved again, it is a current-version run that predicts the same
    save_run(run, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "run.json").read_text())["version"] == VERSION
    assert load_run(tmp_path / "again").learner.predict_tag(x).tolist() == expected["tag"]


def test_version_1_heads_must_match_its_tasks(tmp_path):
    shutil.copytree(FIXTURES / "v1-rerelrp", tmp_path / "run")
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    state["heads"][1] = [3, 2]
    (tmp_path / "run" / "run.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match="heads' do not match"):
        load_run(tmp_path / "run")


def test_a_version_7_builtin_resnet_opens_under_todays_names():
    """Format 7's built-in networks kept their masks in modules of their own: the ResNet-18's
    BatchNorms sat inside (BatchNorm, mask) pairs and its downsampling unit layers were named
    ``layerN.0.downsample``. Their weights and capacity history open under today's names."""
    from rerelrp_core.models import build_model
    from rerelrp_core.runs import _version7_to_8, renamed_weights
    net = build_model("resnet18", (1, 8, 8), 4)
    today = net.state_dict()

    def as_version_7(key):
        if key.startswith("head."):
            return key
        path = key[len("backbone.module."):]
        for wrapped in ("bn1.", "bn2.", "downsample.1."):
            if path.startswith(wrapped) or f".{wrapped}" in path:
                path = path.replace(wrapped, wrapped + "0.", 1)
        return "backbone.resnet." + path

    old = {as_version_7(k): v for k, v in today.items()}
    assert "backbone.resnet.layer2.0.downsample.1.0.running_mean" in old
    assert "backbone.resnet.bn1.0.weight" in old and "backbone.resnet.layer1.0.bn2.0.weight" in old
    assert renamed_weights(old, net, saved_as=7).keys() == today.keys()
    assert renamed_weights(today, net, saved_as=8) is today
    state = {"version": 7, "config": {"arch": "resnet18"},
             "history": {"capacity": [{"conv1": 0.5, "layer2.0.downsample": 0.25}]}}
    migrated, _ = _version7_to_8(state, {})
    assert migrated["history"]["capacity"] == [{"conv1": 0.5, "layer2.0.downsample.0": 0.25}]
    assert set(migrated["history"]["capacity"][0]) <= {layer.name for layer in net.unit_layers}
