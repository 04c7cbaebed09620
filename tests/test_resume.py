"""A training process killed in the middle of a task resumes from its last finished task with
--resume, and ends with exactly the metrics of an uninterrupted run (CPU, same seed)."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

ARGS = ["train", "--dataset", "mnist5k", "--tasks", "5", "--epochs", "4", "--seed", "3", "--quiet"]


def train(out, *extra):
    return subprocess.run([sys.executable, "-m", "rerelrp_core", *ARGS, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)


def tasks_done(out):
    try:
        return len(json.loads((out / "run.json").read_text())["history"]["acc_taw"])
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_and_resume_gives_the_uninterrupted_metrics(tmp_path):
    reference = tmp_path / "reference"
    assert train(reference).returncode == 0
    expected = json.loads((reference / "metrics.json").read_text())

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "rerelrp_core", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while tasks_done(out) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = tasks_done(out)
    assert 2 <= done < 5, f"the kill came too late to test anything ({done} tasks done)"

    again = train(out)  # without --resume an existing run is not overwritten
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = train(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out}: {done} of 5 tasks finished" in resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("acc_taw", "acc_tag", "forgetting_taw", "forgetting_tag", "capacity", "task_confusion",
                "stored_bytes_per_task"):
        assert metrics[key] == expected[key], key
    from rerelrp_core.runs import load_run  # and every test image's outcome at every step
    mine, theirs = load_run(out, device="cpu").outcomes, load_run(reference, device="cpu").outcomes
    assert len(mine) == len(theirs) == 5
    assert all(torch.equal(a[name], b[name]) for step, other in zip(mine, theirs)
               for a, b in zip(step, other) for name in ("taw", "tag", "task"))
