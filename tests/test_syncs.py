"""Training does not make the device wait every step: no value is read back to the host and no
mask is searched per step (counted with a torch dispatch mode: on CPU the same calls happen, so the
count is the one a GPU would see); a diverging run is still stopped with a clear error."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rerelrp_core.errors import UserError
from rerelrp_core.learners import make_learner
from rerelrp_core.learners.training import run_epoch
from rerelrp_core.models import build_model
from rerelrp_core.seeding import generator

from conftest import small_config

SYNCS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
         torch.ops.aten.is_nonzero.default}


class CountSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func in SYNCS
        return func(*args, **(kwargs or {}))


def epoch_syncs(digits_tasks, batch_size, method="rerelrp"):
    """Syncs of one training epoch of task 1 (frozen units of task 0 restored after every step)."""
    config = small_config(method=method, batch_size=batch_size, epochs=1)
    learner = make_learner(build_model(config.arch, (1, 8, 8), 6), config)
    learner.train_task(digits_tasks[0])
    learner.consolidate(digits_tasks[0])
    task = digits_tasks[1]
    x, rows = learner.training_data(task)
    optimizer = torch.optim.SGD(learner.model.parameters(), lr=0.01)
    freezer = learner.freezer(task)
    with CountSyncs() as counter:
        run_epoch(learner, x, rows, learner.loss_columns(task), optimizer, freezer, generator(0), 1, None)
    return counter.count, len(range(0, len(x), batch_size))


def test_syncs_per_epoch_do_not_grow_with_the_number_of_steps(digits_tasks):
    few, steps_few = epoch_syncs(digits_tasks, 256)
    many, steps_many = epoch_syncs(digits_tasks, 16)
    assert steps_many > 4 * steps_few
    assert few == many <= 2          # the epoch's finiteness check and its mean loss


def test_a_diverging_run_is_still_stopped_with_a_clear_error(digits, digits_split):
    from rerelrp_core.sequence import train_sequence
    with pytest.raises(UserError, match="Training diverged in task 0"):
        train_sequence(digits, digits_split, small_config(method="finetune", lr=1e12, epochs=1))
