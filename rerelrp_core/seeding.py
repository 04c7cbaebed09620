"""Seeded randomness that other threads cannot disturb.

``torch.manual_seed`` is process-wide: two trainings in one server would change each other's
initialisation. Code that needs torch's global generator (module constructors and
``reset_parameters`` draw from it) runs inside :func:`seeded`, which holds one lock, forks the
generator state, seeds it and puts the previous state back, so the same seed gives the same
weights whatever else the process is doing. Everything else takes its own ``torch.Generator``.

On CUDA, :func:`deterministic` also makes the kernels reproducible while a training runs, and
:func:`exact_float32` keeps LRP in full float32.
"""
import os
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


class _ProcessFlags:
    """torch flags that are process-wide, held for as long as any caller needs them: the first one
    in sets them, the last one out puts the old values back (trainings and explanations run in
    several threads of one server)."""

    def __init__(self, read, write, value):
        self.read, self.write, self.value = read, write, value
        self.lock, self.users, self.saved = threading.Lock(), 0, None

    @contextmanager
    def held(self):
        with self.lock:
            if not self.users:
                self.saved = self.read()
                self.write(self.value)
            self.users += 1
        try:
            yield
        finally:
            with self.lock:
                self.users -= 1
                if not self.users:
                    self.write(self.saved)


def _read_tf32():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _write_tf32(value):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = value


def _read_deterministic():
    return (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())


def _write_deterministic(value):
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = value[:2]
    torch.use_deterministic_algorithms(value[2], warn_only=value[3])


_NO_TF32 = _ProcessFlags(_read_tf32, _write_tf32, (False, False))
_DETERMINISTIC = _ProcessFlags(_read_deterministic, _write_deterministic, (True, False, True, True))


def exact_float32():
    """Plain float32 matrix products and convolutions in this block (no TF32 on GPUs that have it):
    LRP's relevance and its conservation checks need full precision."""
    return _NO_TF32.held()


@contextmanager
def deterministic(device):
    """On CUDA, deterministic kernels in this block (a resumed run must equal an uninterrupted one):
    cuDNN's deterministic algorithms, no autotuning, no TF32 and torch's deterministic mode (warning
    only where an operation has no deterministic kernel), with the cuBLAS workspace setting it needs.
    On the CPU nothing changes: its kernels already are deterministic."""
    if torch.device(device).type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with _DETERMINISTIC.held(), _NO_TF32.held():
        yield
