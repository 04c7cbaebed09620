"""A shared model is never left modified, people exploring one run do not queue behind each other,
and trainings in one process do not change each other's results."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from rerelrp_core.data import SplitConfig
from rerelrp_core.explain import explain_image
from rerelrp_core.sequence import train_sequence
from rerelrp_core.sharing import SharedRun

from conftest import small_config


def hooks_of(model):
    """Every hook registered on any module of the model."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def model_state(model):
    return ([layer.mask.mask for layer in model.unit_layers],
            [layer.mask.recorded for layer in model.unit_layers],
            model.training, hooks_of(model), {k: v.clone() for k, v in model.state_dict().items()})


@pytest.mark.parametrize("training", [False, True])
def test_exception_in_the_middle_of_a_relevance_pass_leaves_the_model_as_it_was(digits_run, digits_tasks,
                                                                                training):
    model = digits_run.model
    model.train(training)
    before = model_state(model)

    def explode(module, args, output):
        raise RuntimeError("boom")

    handle = model.head.register_forward_hook(explode)   # fires inside the LRP context, masks set
    try:
        with pytest.raises(RuntimeError, match="boom"):
            digits_run.learner.recognise(digits_tasks[1].x_test[:5], want_input=True)
    finally:
        handle.remove()
    masks, recorded, mode, hooks, weights = model_state(model)
    assert masks == before[0] == [None] * 3 and recorded == [None] * 3
    assert mode == training and hooks == before[3] == len(model.unit_layers)     # the masks' own hooks
    assert all(torch.equal(weights[k], v) for k, v in before[4].items())
    model.eval()


def explained(run, x):
    result = explain_image(run, x)
    return (result["predicted"], result["task"], result["task_probs"],
            np.stack([s["heatmap"] for s in result["subnetworks"]]))


def test_eight_threads_explaining_one_run_agree_with_one_thread(digits_run, digits_tasks):
    shared = SharedRun(digits_run)
    images = [t.x_test[i:i + 1] for t in digits_tasks for i in range(3)][:8]
    in_turn = []
    for x in images:
        with shared.borrow() as run:
            in_turn.append(explained(run, x))
    start = threading.Barrier(8)

    def work(x):
        start.wait()
        with shared.borrow() as run:
            return explained(run, x)

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(work, images))
    for a, b in zip(in_turn, together):
        assert a[:2] == b[:2]
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[3], b[3])
    assert digits_run.model.unit_layers[0].mask.mask is None
    assert hooks_of(digits_run.model) == len(digits_run.model.unit_layers)     # the masks' own hooks only


def test_two_trainings_at_once_equal_each_alone(digits):
    split = SplitConfig(n_tasks=2, classes_per_task=[2, 2], seed=0)
    configs = [small_config(epochs=2, seed=5, reinit_free=True),
               small_config(epochs=2, seed=6, method="finetune")]

    def train(config):
        run = train_sequence(digits, split, config)
        return run.metrics["acc_taw"], torch.cat([p.detach().flatten() for p in run.model.parameters()])

    alone = [train(c) for c in configs]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(train, configs))
    for (acc_a, weights_a), (acc_b, weights_b) in zip(alone, together):
        assert acc_a == acc_b and torch.equal(weights_a, weights_b)
