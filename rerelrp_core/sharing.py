"""A finished run that many people explore at once, without queueing behind one another.

LRP hooks the model it runs on and masked passes set masks on it, so a model being explained is
shared state. :class:`SharedRun` lends each concurrent caller its own replica of the run (the same
learner state, its own light copy of the model); replicas go back to a pool and are reused, so a
server holds as many copies as it has simultaneous callers, and keeps at most ``IDLE_REPLICAS``
between bursts.
"""
import dataclasses
import queue
from contextlib import contextmanager

IDLE_REPLICAS = 4     # copies kept for the next callers; more are made when more come at once


class SharedRun:
    """``run`` (finished, never trained further) with a pool of replicas to explore it through."""

    def __init__(self, run):
        self.run = run
        self._idle = queue.Queue(maxsize=IDLE_REPLICAS)

    @contextmanager
    def borrow(self):
        """A replica of the run for this block only; no other caller uses it meanwhile."""
        try:
            replica = self._idle.get_nowait()
        except queue.Empty:
            replica = dataclasses.replace(self.run, learner=self.run.learner.replica())
        try:
            yield replica
        finally:
            try:
                self._idle.put_nowait(replica)
            except queue.Full:
                pass      # a burst is over: let this copy go
