"""Sweeps on a real local Ray: every combination runs as a Ray task in its own folder, the results
equal the same runs done one by one, and a second sweep skips finished runs and resumes an
interrupted one from its checkpoint."""
import json
import shutil

import pytest
import torch

from rerelrp_core.cli import main
from rerelrp_core.config import make_config
from rerelrp_core.data import SplitConfig, load_dataset
from rerelrp_core.errors import UserError
from rerelrp_core.learners import Cancelled
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence
from rerelrp_core.sweep import parse_settings, plan

pytest.importorskip("ray")


def test_a_sweep_on_local_ray_equals_the_runs_done_one_by_one(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--dataset", "digits", "--methods", "rerelrp", "finetune", "--seeds", "0",
            "--tasks", "2", "--set", "epochs=2", "acc_drop=1,3", "--out", str(out), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 4 and all(r["state"] == "trained" for r in rows)
    assert sorted(r["name"] for r in rows) == sorted(
        f"digits-2tasks-{m}-seed0-epochs2-acc_drop{a}" for m in ("rerelrp", "finetune") for a in (1, 3))
    assert (out / "summary.csv").read_text().count("\n") == 5
    # the same runs, one by one, in this process with one torch thread (as each Ray task had)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digits = load_dataset("digits")
        for row in rows:
            config = make_config(method=row["method"], seed=0, epochs=2, acc_drop=row["acc_drop"])
            alone = train_sequence(digits, SplitConfig(n_tasks=2, seed=0), config).metrics
            assert row["final_taw"] == alone["avg_acc_taw"][-1]
            assert row["final_tag"] == alone["avg_acc_tag"][-1]
    finally:
        torch.set_num_threads(threads)
    # interrupt one run after its first task (its checkpoint), then sweep again
    interrupted = out / "digits-2tasks-rerelrp-seed0-epochs2-acc_drop1"
    run = load_run(interrupted, device="cpu")
    expected = run.metrics["avg_acc_tag"][-1]
    shutil.rmtree(interrupted)
    config = make_config(method="rerelrp", seed=0, epochs=2, acc_drop=1)
    finished = []

    def checkpoint(run):
        save_run(run, interrupted)
        finished.append(run.tasks_done)

    with pytest.raises(Cancelled):        # stopped during task 1: task 0's checkpoint is on disk
        train_sequence(load_dataset("digits"), SplitConfig(n_tasks=2, seed=0), config, on_task_end=checkpoint,
                       should_stop=lambda: bool(finished))
    assert load_run(interrupted, device="cpu").tasks_done == 1
    assert main(args) == 0
    states = {r["name"]: r["state"] for r in json.loads((out / "summary.json").read_text())}
    assert states.pop(interrupted.name) == "resumed"
    assert set(states.values()) == {"skipped (finished before)"}
    again = {r["name"]: r for r in json.loads((out / "summary.json").read_text())}
    assert again[interrupted.name]["final_tag"] == expected


def test_the_class_order_is_a_sweep_setting(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--dataset", "digits", "--methods", "finetune", "--tasks", "2", "--set", "epochs=1",
            "class_order=3-1-0-2,1-3-2-0", "--out", str(out), "--quiet"]
    runs = plan("digits", ["finetune"], [0], 2, parse_settings(args[8:10]))
    assert [r["settings"]["class_order"] for r in runs] == [[3, 1, 0, 2], [1, 3, 2, 0]]
    with pytest.raises(UserError, match="class ids separated by '-'"):
        plan("digits", ["finetune"], [0], 2, parse_settings(["class_order=3-one"]))
    assert main(args) == 0, capsys.readouterr().err
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(rows) == {"digits-2tasks-finetune-seed0-epochs1-class_order3.1.0.2",
                         "digits-2tasks-finetune-seed0-epochs1-class_order1.3.2.0"}
    for name, order in (("class_order3.1.0.2", [3, 1, 0, 2]), ("class_order1.3.2.0", [1, 3, 2, 0])):
        run = load_run(out / f"digits-2tasks-finetune-seed0-epochs1-{name}", device="cpu")
        assert run.split.class_order == order and list(run.tasks[0].classes) == order[:2]


def test_bad_sweep_settings_stop_before_anything_runs():
    with pytest.raises(UserError, match="key=value"):
        parse_settings(["acc_drop"])
    with pytest.raises(UserError, match="acc_drop"):
        plan("digits", ["rerelrp"], [0], 2, parse_settings(["acc_drop=-5"]))
    with pytest.raises(UserError, match="use --seeds"):
        plan("digits", ["rerelrp"], [0], 2, parse_settings(["seed=1,2"]))
    runs = plan("pathmnist", ["rerelrp", "rerelrp"], [0, 0], None, {})
    assert len(runs) == 1 and runs[0]["classes_per_task"] == [3, 2, 2, 2] and runs[0]["tasks"] == 4
