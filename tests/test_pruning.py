"""The pruning search: few validation passes, and the acc_drop rule holds on real validation data."""
import math

import pytest
import torch

from rerelrp_core.errors import UserError
from rerelrp_core.learners import Cancelled
from rerelrp_core.models import batched_logits
from rerelrp_core.pruning import cap_claims, prune_order, search_pruning
from rerelrp_core.runs import load_run, save_run


def test_bisection_passes_and_rule_on_monotone_curve():
    scores = [torch.arange(10.0), torch.arange(20.0) / 2, torch.arange(30.0) / 3]
    n_candidates = 60 - 3                                  # one unit per layer is protected
    calls = []

    def evaluate(keep, at_least):
        pruned = 60 - int(sum(k.sum() for k in keep))
        calls.append(pruned)
        return 100.0 - 0.1 * pruned                        # loses 0.1 points per pruned unit

    result = search_pruning(scores, evaluate, reference_accuracy=100.0, acc_drop=1.0)
    assert result.n_pruned == 10                           # 10 units cost exactly 1.0 point
    assert result.accuracy >= 99.0
    assert result.passes == len(calls) <= math.ceil(math.log2(n_candidates + 1))
    assert all(k.sum() >= 1 for k in result.keep)


def test_lowest_relevance_pruned_first_and_one_unit_per_layer_kept():
    scores = [torch.tensor([5.0, 0.1]), torch.tensor([0.2, 0.3, 9.0])]
    order = prune_order(scores)
    assert order == [(0, 1), (1, 0), (1, 1)]               # units 0 of layer 0 and 2 of layer 1 protected
    result = search_pruning(scores, lambda keep, at_least: 100.0, 100.0, acc_drop=0.0)
    assert [k.tolist() for k in result.keep] == [[True, False], [False, False, True]]


def test_max_keep_fraction_caps_what_a_task_keeps():
    scores = [torch.arange(50.0)]
    result = search_pruning(scores, lambda keep, at_least: 100.0 if keep[0].sum() > 40 else 0.0, 100.0,
                            acc_drop=1.0, max_keep_fraction=0.2)
    assert int(result.keep[0].sum()) <= 10


def test_claim_cap_leaves_free_units_and_keeps_what_is_reused():
    scores = [torch.arange(10.0), torch.arange(4.0)]
    free = [torch.tensor([True] * 8 + [False] * 2), torch.tensor([False, True, True, True])]
    keep = cap_claims([torch.ones(10, dtype=torch.bool), torch.ones(4, dtype=torch.bool)], scores, free, 0.5)
    assert (keep[0] & free[0]).sum() == 4 and keep[0][8:].all()      # 4 of 8 free, both reused kept
    assert keep[0][4:8].all()                                        # the most relevant new ones
    assert (keep[1] & free[1]).sum() == 1 and keep[1][0] and keep[1][3]


def test_a_cap_that_breaks_acc_drop_leaves_one_free_unit_per_layer():
    """Accuracy falls if anything is pruned: the 0.5 cap would cost 50 points, so the least cap that
    leaves every layer a free unit is applied instead (even though it costs as much)."""
    scores = [torch.arange(10.0), torch.arange(4.0)]
    free = [torch.tensor([True] * 8 + [False] * 2), torch.tensor([False, True, True, True])]
    result = search_pruning(scores, lambda keep, at_least: 100.0 if all(k.all() for k in keep) else 50.0,
                            100.0, acc_drop=1.0, free=free, max_claim_fraction=0.5)
    layer0, layer1 = result.keep
    assert (layer0 & free[0]).sum() == 7 and not layer0[0] and layer0[8:].all()
    assert (layer1 & free[1]).sum() == 2 and not layer1[1] and layer1[0]
    assert result.accuracy == 50.0 and result.n_pruned == 2 and result.capped == 2


def test_a_cap_within_its_tolerance_stands():
    """The 0.5 cap costs 3 points beyond acc_drop: with a tolerance of 5 points it stands (the task
    freezes half its free units), with 2 it gives way to one free unit per layer."""
    scores = [torch.arange(10.0)]
    free = [torch.ones(10, dtype=torch.bool)]

    def accuracy(keep, at_least):
        return 100.0 if keep[0].all() else 96.0        # 1 point allowed, the cap costs 4

    held = search_pruning(scores, accuracy, 100.0, acc_drop=1.0, free=free, max_claim_fraction=0.5,
                          cap_tolerance=5.0)
    assert int(held.keep[0].sum()) == 5 and held.accuracy == 96.0
    given_way = search_pruning(scores, accuracy, 100.0, acc_drop=1.0, free=free, max_claim_fraction=0.5,
                               cap_tolerance=2.0)
    assert int(given_way.keep[0].sum()) == 9


def test_a_cap_is_skipped_where_one_free_unit_per_layer_is_left_anyway():
    """Accuracy needs 8 kept units: the 0.5 cap would take one more, and every layer keeps a free
    unit without it, so the task keeps what the search chose, within acc_drop."""
    scores = [torch.arange(10.0), torch.arange(4.0)]
    free = [torch.tensor([True] * 8 + [False] * 2), torch.tensor([False, True, True, True])]
    result = search_pruning(scores, lambda keep, at_least: 100.0 if sum(k.sum() for k in keep) >= 8 else 50.0,
                            100.0, acc_drop=1.0, free=free, max_claim_fraction=0.5)
    assert sum(int(k.sum()) for k in result.keep) == 8 and result.accuracy == 100.0 and result.capped == 0


def test_claim_cap_keeps_one_unit_in_a_layer_it_empties():
    keep = cap_claims([torch.tensor([False, False, True])], [torch.tensor([3.0, 1.0, 2.0])],
                      [torch.tensor([False, False, True])], 0.5)  # floor(0.5 * 1 free) = 0 new units
    assert keep[0].tolist() == [True, False, False]


def test_a_validation_pass_stops_once_the_floor_is_out_of_reach(digits_run, digits_tasks, monkeypatch):
    learner, task = digits_run.learner, digits_tasks[0]
    monkeypatch.setattr("rerelrp_core.learners.base.inference_batch", lambda device: 16)  # many batches
    masks = learner.task_masks(task.index)
    exact = learner.validation_accuracy(task, masks)
    assert learner.validation_accuracy(task, masks, at_least=exact) == exact      # reaches it: exact
    assert learner.validation_accuracy(task, masks, at_least=0.0) == exact
    weak = [torch.zeros_like(m) for m in masks]                                   # every unit pruned
    weak[-1][0] = 1
    accuracy = learner.validation_accuracy(task, weak)
    assert accuracy < exact - 5
    from rerelrp_core.learners import base
    batches = []
    monkeypatch.setattr(base, "batched_logits", lambda *args: batches.append(1) or batched_logits(*args))
    bound = learner.validation_accuracy(task, weak, at_least=exact)
    assert accuracy <= bound < exact        # at most the floor, at least the truth
    assert len(batches) < math.ceil(len(task.y_val) / 16), "the pass did not stop early"


def test_the_search_reuses_the_accuracy_training_ended_at(digits_tasks):
    from rerelrp_core.learners import make_learner
    from rerelrp_core.models import build_model

    from conftest import small_config
    config = small_config()
    learner = make_learner(build_model(config.arch, (1, 8, 8), 6, seed=config.seed), config)
    task = digits_tasks[0]
    best = learner.train_task(task)
    assert learner.trained_accuracy == {0: best}
    assert learner.validation_accuracy(task) == best          # the model rests at that epoch, exactly
    learner.consolidate(task)
    assert learner.prune_log[0]["val_acc_before"] == best and learner.trained_accuracy == {}


def test_no_task_takes_every_free_unit(digits_run):
    learner = digits_run.learner
    assert learner.config.max_claim_fraction < 1
    assert all(0 < f for f in learner.ownership.free_fraction())


def test_real_pruning_respects_acc_drop(digits_run, digits_tasks):
    learner = digits_run.learner
    assert any(entry["capped"] == 0 for entry in learner.prune_log)
    for entry, task in zip(learner.prune_log, digits_tasks):
        if entry["capped"] == 0:                           # the claim cap may cost more than acc_drop
            assert entry["val_acc_after"] >= entry["val_acc_before"] - learner.config.acc_drop
        assert entry["pruned"] > 0, "nothing was pruned on real data"
        total = sum(learner.ownership.layer_sizes)
        assert entry["passes"] <= math.ceil(math.log2(total)) + 2
        # the stored subnetwork really has the accuracy the search reported
        assert learner.validation_accuracy(task, learner.task_masks(task.index)) == entry["val_acc_after"]


def test_pruning_curve_redraws_what_the_search_saw(digits_run, digits_tasks, tmp_path):
    learner = digits_run.learner
    total = sum(learner.ownership.layer_sizes)
    for task, entry in zip(digits_tasks, learner.prune_log):
        curve = learner.pruning_curve(task)
        chosen = curve["chosen"]
        assert curve["kept"][0] == total and curve["kept"] == sorted(curve["kept"], reverse=True)
        assert curve["kept"][chosen] == total - entry["pruned"] + entry["capped"]
        assert curve["reference"] == entry["val_acc_before"]
        if entry["capped"] == 0:        # the level the search chose is the task's frozen subnetwork
            assert curve["accuracy"][chosen] == entry["val_acc_after"]
    # the rankings survive a save, and a run saved without them says why it has no curve
    save_run(digits_run, tmp_path / "run")
    again = load_run(tmp_path / "run", device="cpu").learner
    assert again.rankings.keys() == learner.rankings.keys() == {0, 1, 2}
    assert all(torch.equal(again.rankings[t], learner.rankings[t]) for t in learner.rankings)
    again.rankings = {}
    with pytest.raises(UserError, match="no stored relevance ranking"):
        again.pruning_curve(digits_tasks[0])


def test_a_run_from_before_rankings_resumes_and_keeps_each_ranking_under_its_task(digits, digits_split,
                                                                                  tmp_path):
    from safetensors.torch import load_file, save_file

    from rerelrp_core.sequence import train_sequence

    from conftest import small_config
    out = tmp_path / "run"
    finished = []

    def checkpoint(run):
        save_run(run, out)
        finished.append(run.tasks_done)

    with pytest.raises(Cancelled):
        train_sequence(digits, digits_split, small_config(), on_task_end=checkpoint,
                       should_stop=lambda: len(finished) >= 2)
    tensors = load_file(str(out / "learner.safetensors"))          # as a run saved before rankings
    older = {k: v for k, v in tensors.items() if not k.startswith("ranking.")}
    save_file(older, str(out / "learner.safetensors"))
    resumed = train_sequence(digits, digits_split, small_config(), run=load_run(out, device="cpu"))
    assert set(resumed.learner.rankings) == {2}
    save_run(resumed, tmp_path / "again")
    reopened = load_run(tmp_path / "again", device="cpu").learner
    assert set(reopened.rankings) == {2}
    assert torch.equal(reopened.rankings[2], resumed.learner.rankings[2])
