"""Training off the script thread: a job object the Train page polls for progress, and the one
server-wide queue every job waits in.

The job lives in the user's ``st.session_state``, so other sessions never see it. Checkpoints go to
a hidden folder of the run registry after every finished task; the finished run is moved to its
final name, and a cancelled or failed run keeps its last finished task there to resume from.

A classroom shares one server: thirty trainings at once on two cores would starve every page, so
at most ``RERELRP_MAX_TRAININGS`` jobs train at a time (default: one per two cores, at least one);
the others wait in arrival order and know their place. When the server runs several processes
(``RERELRP_WORKERS``), the limit holds for all of them together: a job also takes one of the lock
files in the run folder's ``.training-places`` (their order is each process's own).
"""
import fcntl
import os
import threading
import time
import traceback
import uuid
from pathlib import Path

from rerelrp_core.data import load_dataset
from rerelrp_core.errors import UserError
from rerelrp_core.learners import Cancelled
from rerelrp_core.progress import Progress, Stage
from rerelrp_core.runs import load_run, save_run
from rerelrp_core.sequence import train_sequence


class TrainingQueue:
    """First come, first served: at most ``slots`` jobs hold a place to train at once."""

    def __init__(self, slots):
        self.slots = slots
        self.waiting = []           # jobs in arrival order
        self.running = 0
        self.peak = 0               # the most jobs that ever trained at once (tests and load checks)
        self.held = {}              # job -> its lock file in the places every process shares
        self.turn = threading.Condition()

    def wait_turn(self, job, places=None):
        """Block until ``job`` may train; False when it was cancelled while it waited. ``places``: the
        folder of lock files every process of this server shares (see :func:`take_place`)."""
        with self.turn:
            self.waiting.append(job)
            while not (self.waiting[0] is job and self.running < self.slots and self._take(job, places)):
                if job.stop_event.is_set():
                    self.waiting.remove(job)
                    self.turn.notify_all()
                    return False
                self.turn.wait(0.2)
            self.waiting.pop(0)
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.turn.notify_all()
            return True

    def _take(self, job, places):
        """Whether ``job`` holds one of the places every process shares (always, without ``places``)."""
        handle = None if places is None else take_place(places, self.slots)
        if handle is not None:
            self.held[job] = handle
        return places is None or handle is not None

    def release(self, job):
        with self.turn:
            self.running -= 1
            held = self.held.pop(job, None)
            if held is not None:
                held.close()            # closing the file lets its lock go
            self.turn.notify_all()

    def place(self, job):
        """1 for the next job to train, 2 for the one after…; None when ``job`` is not waiting."""
        with self.turn:
            return self.waiting.index(job) + 1 if job in self.waiting else None


def take_place(folder, slots):
    """One of ``slots`` training places shared by every process of this server: an exclusive lock on
    one of the files ``folder/place-N`` (the system lets it go when the process ends, however it
    ends), as an open file to close when done; None when all are taken."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(slots):
        handle = open(folder / f"place-{number}", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
    return None


def default_slots():
    """Trainings at once: ``RERELRP_MAX_TRAININGS``, else one per two cores (at least one)."""
    value = os.environ.get("RERELRP_MAX_TRAININGS", "")
    if value.strip():
        if not value.strip().isdigit() or int(value) < 1:
            raise UserError(f"RERELRP_MAX_TRAININGS must be a whole number of at least 1; got {value!r}.")
        return int(value)
    return max(1, (os.cpu_count() or 2) // 2)


QUEUE = TrainingQueue(default_slots())


class TrainingJob:
    """Trains one task sequence in a background thread and records its progress."""

    def __init__(self, dataset, split, config, runs_dir, name, resume_from=None):
        self.dataset, self.split, self.config, self.name = dataset, split, config, name
        self.runs_dir = Path(runs_dir)
        self.resume_from = resume_from
        self.partial = resume_from or self.runs_dir / ".partial" / f"{name}-{uuid.uuid4().hex[:8]}"
        self.stop_event = threading.Event()
        self.events = []            # Progress events, in order
        self.run = None
        self.error = None
        self.state = "queued"       # queued | running | finished | cancelled | failed
        self.saved_to = None
        self.started = time.time()
        self.ended = None           # when the job stopped (finished, cancelled or failed)
        self.thread = threading.Thread(target=self._work, daemon=True, name=f"train-{name}")

    def start(self):
        self.thread.start()
        return self

    def cancel(self):
        self.stop_event.set()

    def resumed(self):
        """A new job that continues this one from its last checkpoint."""
        return TrainingJob(self.dataset, self.split, self.config, self.runs_dir, self.name,
                           resume_from=self.partial)

    @property
    def latest(self):
        return self.events[-1] if self.events else None

    @property
    def elapsed(self):
        """Seconds the job ran (it stops counting when the job ends)."""
        return (self.ended or time.time()) - self.started

    def _checkpoint(self, run):
        self.run = run
        save_run(run, self.partial)

    @property
    def active(self):
        """Queued or training: the session cannot start another job meanwhile."""
        return self.state in ("queued", "running")

    def place(self):
        """The job's place in the server's queue (1 = next), None once it trains."""
        return QUEUE.place(self)

    def _work(self):
        if not QUEUE.wait_turn(self, self.runs_dir / ".training-places"):
            self.state, self.ended = "cancelled", time.time()
            return
        self.state, self.started = "running", time.time()
        try:
            self._train()
        finally:
            QUEUE.release(self)

    def _train(self):
        _lower_priority()
        try:
            dataset = load_dataset(self.dataset)
            self.events.append(Progress(Stage.DATA, 1, 1, images=len(dataset.x_train)))
            previous = load_run(self.resume_from) if self.resume_from else None
            self.run = previous     # a resumed job shows, and can resume again from, where it began
            self.run = train_sequence(dataset, self.split, self.config, progress=self.events.append,
                                      should_stop=self.stop_event.is_set, on_task_end=self._checkpoint,
                                      run=previous)
            target = self.runs_dir / self.name
            if target.exists():
                target = self.runs_dir / f"{self.name}-{uuid.uuid4().hex[:6]}"
            os.replace(self.partial, target)
            self.saved_to = target
            self.state = "finished"
        except Cancelled:
            self.state = "cancelled"
        except UserError as error:
            self.error, self.state = str(error), "failed"
        except Exception as error:  # a bug or an environment problem: keep the page alive, show it
            self.error = f"Training failed: {error!r}\n{traceback.format_exc(limit=3)}"
            self.state = "failed"
        finally:
            self.ended = time.time()


def _lower_priority():
    """Give this training thread a nice value of 10 (Linux schedules threads one by one): on a
    small server, people exploring runs should not wait behind a training."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass    # not Linux, or not allowed: train at normal priority
