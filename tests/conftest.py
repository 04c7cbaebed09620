"""Shared fixtures: real data (scikit-learn digits) and one small ReReLRP run trained once per session."""
import pytest
import torch

import rerelrp_core  # noqa: F401
from rerelrp_core.config import TrainConfig
from rerelrp_core.data import SplitConfig, load_digits, make_tasks
from rerelrp_core.sequence import train_sequence

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def digits_split():
    return SplitConfig(n_tasks=3, classes_per_task=[2, 2, 2], seed=0)


@pytest.fixture(scope="session")
def digits_tasks(digits, digits_split):
    return make_tasks(digits, digits_split)


def save_with_damaged_tensor(run, folder, name, damage):
    """Save ``run`` into ``folder``, then replace its stored tensor ``name`` by ``damage(tensor)``,
    or delete it when ``damage`` is None."""
    from safetensors.torch import load_file, save_file

    from rerelrp_core.runs import save_run
    save_run(run, folder)
    path = folder / "learner.safetensors"
    tensors = load_file(str(path))
    if damage is None:
        del tensors[name]
    else:
        tensors[name] = damage(tensors[name])
    save_file(tensors, str(path))


def small_config(**overrides):
    values = dict(method="rerelrp", epochs=8, lr=0.05, seed=0, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def digits_run(digits, digits_split):
    """A 3-task ReReLRP run on real digits, trained once."""
    return train_sequence(digits, digits_split, small_config())


@pytest.fixture(scope="session")
def digits_forest_run(digits, digits_split):
    """The same run recognising tasks with the relevance forests (``recognition`` kind forest)."""
    return train_sequence(digits, digits_split, small_config(recognition={"kind": "forest"}))
