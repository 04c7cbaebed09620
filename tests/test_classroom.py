"""A classroom on one server: ten sessions press Start training at once. The server-wide queue lets
at most its number of slots train at a time, the rest wait and see their place, every run finishes
and is saved, and a session may rename or delete only the runs it trained."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.jobs
import ui.state

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def classroom(tmp_path, monkeypatch):
    monkeypatch.setattr(ui.state, "RUNS_DIR", tmp_path)
    queue = ui.jobs.TrainingQueue(2)
    monkeypatch.setattr(ui.jobs, "QUEUE", queue)
    return tmp_path, queue


def train_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("views/train.py")
    return at.run()


def start(at, name, tasks=2, epochs=1):
    [s for s in at.selectbox if s.label == "Data set"][0].set_value("digits")
    [n for n in at.number_input if n.label == "Tasks"][0].set_value(tasks)
    [n for n in at.number_input if n.label == "Max epochs per task"][0].set_value(epochs)
    [t for t in at.text_input if t.label == "Run name"][0].set_value(name)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception or at.error]
    return at.session_state["job"]


def test_ten_sessions_share_two_training_slots(classroom):
    runs_dir, queue = classroom
    sessions = [train_page() for _ in range(10)]
    jobs = [start(at, f"student-{i}") for i, at in enumerate(sessions)]
    # a session that waits is told its place
    waiting = next(i for i, job in enumerate(jobs) if job.state == "queued")
    sessions[waiting].run()
    assert any("in this server's queue" in i.value for i in sessions[waiting].info)
    # pages stay usable meanwhile
    tour = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not tour.exception and not tour.error
    deadline = time.time() + 300
    while any(job.active for job in jobs) and time.time() < deadline:
        assert queue.running <= 2
        time.sleep(0.05)
    assert [job.state for job in jobs] == ["finished"] * 10, [job.error for job in jobs]
    assert queue.peak == 2 and queue.running == 0 and not queue.waiting
    assert sorted(p.name for p in runs_dir.iterdir() if (p / "run.json").exists()) == sorted(
        f"student-{i}" for i in range(10))
    # each session may manage its own run only
    at = sessions[3].run()
    assert [t.value for t in at.text_input if t.label == "New name"] == ["student-3"]
    assert sum("another session: read-only" in c.value for c in at.caption) == 9


def test_a_queued_job_can_be_cancelled_before_it_trains(classroom):
    runs_dir, queue = classroom
    queue.running = queue.slots          # every slot busy (as if two trainings ran) until we free them
    waiting = start(train_page(), "waits")
    time.sleep(0.5)
    assert waiting.state == "queued" and waiting.place() == 1
    waiting.cancel()
    deadline = time.time() + 30
    while waiting.active and time.time() < deadline:
        time.sleep(0.05)
    assert waiting.state == "cancelled" and waiting.run is None and waiting.events == []
    assert not queue.waiting and queue.running == queue.slots      # it never took a slot
    queue.running = 0
    assert not (runs_dir / "waits").exists()


def test_an_administrator_manages_every_run(classroom, monkeypatch):
    runs_dir, _ = classroom
    trainer = train_page()
    job = start(trainer, "theirs")
    while job.active:
        time.sleep(0.05)
    other = train_page()
    assert not [t for t in other.text_input if t.label == "New name"]
    monkeypatch.setattr(ui.state, "ADMIN", True)
    other.run()
    assert [t.value for t in other.text_input if t.label == "New name"] == ["theirs"]


def test_server_processes_share_the_training_places(tmp_path):
    """Two app processes of one server (RERELRP_WORKERS; here two queues, as each process has its
    own) with one place: a job of the second waits until the first one's job has finished."""
    import threading

    class Job:
        stop_event = threading.Event()

    first, second = ui.jobs.TrainingQueue(1), ui.jobs.TrainingQueue(1)
    places = tmp_path / ".training-places"
    one, other = Job(), Job()
    assert first.wait_turn(one, places)
    waiter = threading.Thread(target=second.wait_turn, args=(other, places))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive() and second.place(other) == 1      # the only place is taken elsewhere
    first.release(one)
    waiter.join(timeout=5)
    assert not waiter.is_alive() and second.running == 1
    second.release(other)
    assert ui.jobs.take_place(places, 1) is not None            # and given back
