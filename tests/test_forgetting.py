"""From a forgetting number to its images, on real runs: per-image outcomes kept by training and
saved with the run; lost and recovered images that reproduce every matrix cell; task confusion
that adds up to the task-agnostic accuracy; older runs' outcomes recomputed exactly; two runs
compared image by image; what moved inside the network for one image."""
import numpy as np
import pytest
import torch

from rerelrp_core.errors import UserError
from rerelrp_core.evaluation import evaluate_step
from rerelrp_core.forgetting import (
    cell_trace,
    compare_runs,
    confused_images,
    image_change,
    last_outcomes,
    recognition_confusion,
    traced_outcomes,
)
from rerelrp_core.outcomes import FIELDS, nbytes
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence

from conftest import small_config


@pytest.fixture(scope="module")
def finetune_run(digits, digits_split):
    return train_sequence(digits, digits_split, small_config(method="finetune", keep_snapshots=True))


@pytest.fixture(scope="module")
def runs(digits_run, finetune_run):
    return {"rerelrp": digits_run, "finetune": finetune_run}


def count(acc, n):
    """Right answers behind an accuracy of ``acc`` percent of ``n`` images."""
    return round(acc * n / 100)


@pytest.mark.parametrize("method", ["rerelrp", "finetune"])
def test_lost_and_recovered_images_reproduce_every_cell_of_both_matrices(runs, digits_tasks, method):
    run = runs[method]
    assert len(run.outcomes) == run.tasks_done == 3
    changed = 0
    for kind in ("taw", "tag"):
        matrix = run.history[f"acc_{kind}"]
        for step in range(run.tasks_done):
            for task in range(step + 1):
                trace = cell_trace(run, run.outcomes, digits_tasks, step, task, kind)
                n = len(digits_tasks[task].y_test)
                assert trace["right then"] == count(matrix[task][task], n)
                assert trace["right now"] == count(matrix[step][task], n)
                lost_count, recovered_count = len(trace["lost"]), len(trace["recovered"])
                assert trace["right then"] - lost_count + recovered_count == trace["right now"]
                assert trace["change"] == pytest.approx(matrix[step][task] - matrix[task][task], abs=1e-4)
                lost = {row["index"] for row in trace["lost"]}
                truth = digits_tasks[task].y_test
                for row in trace["lost"]:        # right then, wrong now, named as the task names them
                    assert row["class"] == digits_tasks[task].class_names[int(truth[row["index"]])]
                    assert row["then"] == row["class"] != row["now"]
                assert not lost & {row["index"] for row in trace["recovered"]}
                drops = [row["p lost"] for row in trace["lost"]]
                assert drops == sorted(drops, reverse=True)          # most confidence lost first
                changed += len(trace["lost"]) + len(trace["recovered"])
    if method == "finetune":
        assert changed > 0        # fine-tuning forgets: the test has cells with images in them
    else:
        assert all(not cell_trace(run, run.outcomes, digits_tasks, s, t, "taw")["lost"]
                   for s in range(3) for t in range(s + 1))       # ReReLRP: task-aware forgetting is 0


def test_task_confusion_adds_up_to_the_task_agnostic_accuracy(digits_run, digits_tasks):
    run = digits_run
    for step in range(run.tasks_done):
        confusion = recognition_confusion(run.outcomes, digits_tasks, step)
        counts, within = np.array(confusion["counts"]), confusion["within"]
        for t in range(step + 1):
            n = len(digits_tasks[t].y_test)
            assert counts[t].sum() == n
            assert counts[t, t] - within[t] == count(run.history["acc_tag"][step][t], n)
            assert len(confused_images(run.outcomes, step, t, t)) == counts[t, t]
        shares = np.array(confusion["shares"]).sum() + sum(confusion["within_shares"])
        assert confusion["mistakes"] == 0 or shares == pytest.approx(1.0)
    assert confusion["counts"] == run.history["task_confusion"]


@pytest.mark.parametrize("method", ["rerelrp", "finetune"])
def test_older_runs_get_the_same_outcomes_recomputed(runs, digits_tasks, method):
    """A run saved before outcomes were kept: ReReLRP's from its frozen subnetworks and class
    statistics, fine-tuning's from its snapshots; predictions identical to the recorded ones."""
    run = runs[method]
    recorded = run.outcomes
    run.outcomes = []
    try:
        again, note = traced_outcomes(run, digits_tasks)
    finally:
        run.outcomes = recorded
    assert "reproduce every cell" in note
    for step, seen in zip(recorded, again):
        for mine, theirs in zip(step, seen):
            for name in ("taw", "tag", "task"):
                assert torch.equal(mine[name], theirs[name]), name


def test_a_run_without_outcomes_or_snapshots_says_why(digits, digits_split, digits_tasks):
    run = train_sequence(digits, digits_split, small_config(method="lwf", epochs=2))
    run.outcomes = []
    with pytest.raises(UserError, match="no per-task snapshots"):
        traced_outcomes(run, digits_tasks)
    last = last_outcomes(run, digits_tasks)       # its last step still comes from its final state
    assert [evaluate_step(run.learner, digits_tasks)[1][t] for t in range(3)] == run.history["acc_tag"][-1]
    assert len(last) == 3


def test_outcomes_are_saved_with_the_run_and_few_bytes(digits_run, digits_tasks, tmp_path):
    folder = save_run(digits_run, tmp_path / "run")
    loaded = load_run(folder, device="cpu")
    for step, seen in zip(digits_run.outcomes, loaded.outcomes):
        for mine, theirs in zip(step, seen):
            assert all(torch.equal(mine[name], theirs[name]) for name in FIELDS)
    images = sum(len(digits_tasks[t].y_test) for s in range(3) for t in range(s + 1))
    assert nbytes(loaded.outcomes) == 10 * images
    (folder / "outcomes.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="outcomes.safetensors is damaged"):
        load_run(folder, device="cpu")
    (folder / "outcomes.safetensors").unlink()          # as a run saved before outcomes were kept
    assert load_run(folder, device="cpu").outcomes == []


def test_two_runs_compared_image_by_image(runs, digits_tasks):
    mine, theirs = runs["rerelrp"], runs["finetune"]
    pair = compare_runs(mine.outcomes[-1], theirs.outcomes[-1], digits_tasks, "tag")
    counts = np.array(pair["counts"])
    n = [len(task.y_test) for task in digits_tasks]
    assert counts.sum() == sum(n)
    assert counts[1].sum() == sum(count(a, k) for a, k in zip(mine.history["acc_tag"][-1], n))
    assert counts[:, 1].sum() == sum(count(a, k) for a, k in zip(theirs.history["acc_tag"][-1], n))
    assert all(len(pair["images"][f"{a},{b}"]) == counts[a, b] for a in (0, 1) for b in (0, 1))
    with pytest.raises(UserError, match="learnt 3 and 2 tasks"):
        compare_runs(mine.outcomes[-1], theirs.outcomes[1], digits_tasks)


def test_what_moved_for_an_image(digits, digits_split, digits_tasks, finetune_run):
    task = digits_tasks[0]
    x, row = task.x_test[:1], int(task.y_test[0])
    moved = image_change(finetune_run, x, 0, row, 2)
    assert np.abs(moved["difference"]).max() > 0
    assert moved["units"] and all(u["now"] != u["then"] for u in moved["units"])
    assert all(layer["used"] > 0 for layer in moved["layers"])      # fine-tuning moves every layer
    frozen = train_sequence(digits, digits_split, small_config(keep_snapshots=True, epochs=3))
    still = image_change(frozen, x, 0, row, 2)
    assert np.abs(still["difference"]).max() == 0 and still["units"] == []
    assert all(layer["used"] == 0 for layer in still["layers"])      # its subnetwork is frozen
    assert any(layer["other"] for layer in still["layers"])          # while later tasks trained the rest
    with pytest.raises(UserError, match="no per-task weight snapshots"):
        image_change(runs_without_snapshots(frozen), x, 0, row, 2)


def runs_without_snapshots(run):
    import dataclasses
    return dataclasses.replace(run, snapshots=[])


def test_a_resumed_older_run_keeps_no_outcomes(digits, digits_split, digits_tasks, tmp_path):
    """Outcomes of some steps only would be wrong steps: a run resumed from a checkpoint saved
    before outcomes were kept (here: outcomes dropped after task 1) keeps none, and they are
    recomputed when asked, as for any older run."""
    def saved_before_outcomes(run):
        if run.tasks_done == 2:
            run.outcomes.clear()
    run = train_sequence(digits, digits_split, small_config(epochs=3), on_task_end=saved_before_outcomes)
    assert run.outcomes == [] and run.tasks_done == 3
    assert load_run(save_run(run, tmp_path / "older"), device="cpu").outcomes == []
    recomputed, note = traced_outcomes(run, digits_tasks)
    assert len(recomputed) == 3 and "reproduce every cell" in note
