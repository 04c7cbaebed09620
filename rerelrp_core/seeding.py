"""Seeded randomness that other threads cannot disturb.

``torch.manual_seed`` is process-wide: two trainings in one server would change each other's
initialisation. Code that needs torch's global generator (module constructors and
``reset_parameters`` draw from it) runs inside :func:`seeded`, which holds one lock, forks the
generator state, seeds it and puts the previous state back, so the same seed gives the same
weights whatever else the process is doing. Everything else takes its own ``torch.Generator``.
"""
import threading
from contextlib import contextmanager

import torch

_LOCK = threading.Lock()


@contextmanager
def seeded(seed):
    """torch's generators seeded with ``seed`` for this block only, one block at a time."""
    # manual_seed seeds the CUDA generators too: fork those as well, so they are put back (only once
    # CUDA is started: before that the seeding is only queued, and forking would start it)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with _LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def generator(seed):
    """A private CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)
