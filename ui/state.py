"""Per-session state and shared caches for the app.

Heavy read-only objects (data sets, saved runs) are loaded once per server with
``st.cache_resource`` and shared by all sessions. A run is a :class:`SharedRun`: every computation
borrows its own replica of the model (``with shared.borrow() as run``), so people looking at the
same run never wait for one another. What Explore computes for an image (explanation, pathways) is
cached per run across sessions, keyed by the image's bytes: a class looking at the same demo image
pays for it once. Uploads, selections and runs in progress live in ``st.session_state``, so
sessions never see each other's.
"""
import collections
import copy
import hashlib
import os
import threading
import weakref
from pathlib import Path

import streamlit as st

import rerelrp_core  # noqa: F401
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks
from rerelrp_core.errors import UserError
from rerelrp_core.explain import explain_image, explanation_drift
from rerelrp_core.forgetting import image_change, last_outcomes, traced_outcomes
from rerelrp_core.pathways import explain_pathway
from rerelrp_core.registry import list_runs
from rerelrp_core.runs import load_run
from rerelrp_core.sharing import SharedRun

ROOT = Path(__file__).resolve().parent.parent
DEMO_RUNS = ROOT / "assets" / "demo-runs"
DEMO_RUN = DEMO_RUNS / "rerelrp"        # the one the app opens first
RUNS_DIR = Path(os.environ.get("RERELRP_RUNS", ROOT / "runs"))
# weights files a visitor may start a model from: only what the server's owner put here (the app
# never runs code or reads files a visitor supplies)
WEIGHTS_DIR = Path(os.environ.get("RERELRP_WEIGHTS", ROOT / "weights"))


def weights_files():
    """Weights files on the server, by name."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(f.name for f in WEIGHTS_DIR.iterdir() if f.suffix in (".safetensors", ".pt", ".pth"))
ADMIN = os.environ.get("RERELRP_ADMIN", "").strip().lower() in ("1", "true", "yes")


_PRELOADED = {}   # (path, stamp) -> SharedRun, filled by preload() before the server takes visitors


@st.cache_resource(show_spinner="Loading run…", max_entries=32)   # every demo run and saved ones
def _cached_run(path, stamp):
    return _PRELOADED.get((path, stamp)) or SharedRun(load_run(path, device="cpu"))


def preload(path):
    """Open a run and explain the first image Explore shows, outside any session (see
    ui/serve.py); it runs on a borrowed replica, so early visitors are never disturbed."""
    path = Path(path)
    if not (path / "run.json").exists():
        return
    shared = SharedRun(load_run(path, device="cpu"))
    _PRELOADED[(str(path), _stamp(path))] = shared
    tasks = (cached_tasks.__wrapped__(shared.run.dataset, vars(shared.run.split)) if shared.run.tasks_done
             else None)
    if tasks:     # what Explore shows first, computed once for every visitor
        x = tasks[0].x_test[:1]
        pathway(shared, x, explanation(shared, x)["task"])


def _stamp(path):
    return (path / "run.json").stat().st_mtime if (path / "run.json").exists() else 0


@st.cache_resource(show_spinner="Loading data set…", max_entries=4)
def cached_tasks(dataset, split_json):
    split = SplitConfig(**split_json)
    return make_tasks(load_dataset(dataset), split)


def available_runs():
    """The demo runs (the default one first) and every saved run, newest first: dicts with
    ``name``, ``path``, ``label`` (shown in the picker) and ``demo``."""
    demos = sorted(list_runs(DEMO_RUNS), key=lambda e: e["path"] != DEMO_RUN)
    return ([{**entry, "label": f"demo {entry['label']}", "demo": True} for entry in demos]
            + [{**entry, "demo": False} for entry in list_runs(RUNS_DIR)])


def open_run(path):
    """The SharedRun of a saved run folder; reloaded when the folder changes."""
    path = Path(path)
    return _cached_run(str(path), _stamp(path))


def may_manage(name):
    """Whether this session may rename or delete saved run ``name``: only the runs it trained (on a
    classroom server nobody renames a neighbour's run), any run when the administrator set
    ``RERELRP_ADMIN=1``. The bundled demo runs are never listed for either."""
    return ADMIN or name in st.session_state.get("my_runs", set())


def own_run(name, instead_of=None):
    """Record that this session trained run ``name`` (``instead_of``: the name it had before a rename;
    ``name`` None: it was deleted)."""
    mine = st.session_state.setdefault("my_runs", set())
    mine.discard(instead_of)
    if name is not None:
        mine.add(name)


def current_run():
    """The SharedRun the user picked in the sidebar, or None (an error is shown when it cannot
    be opened)."""
    choice = st.session_state.get("run_path")
    if choice is None:          # nothing picked yet (or the page runs alone): the first run listed
        runs = available_runs()
        if not runs:
            return None
        choice = st.session_state["run_path"] = str(runs[0]["path"])
    try:
        return open_run(choice)
    except UserError as error:
        st.error(str(error))
        return None


def finished_run():
    """The picked SharedRun, for pages that need at least one finished task: otherwise the page
    says so and stops."""
    shared = current_run()
    if shared is None or not shared.run.tasks_done:
        st.info("Pick a run with at least one finished task in the sidebar.")
        st.stop()
    return shared


def tasks_or_stop(run):
    """The run's finished tasks with their images; when its data set is not on this machine the
    page says so and stops (instead of a traceback)."""
    tasks, message = data_tasks(run)
    if tasks is None:
        st.info(message)
        st.stop()
    return tasks


def run_tasks(run):
    """The run's tasks (test and validation data) from the shared data cache."""
    return cached_tasks(run.dataset, vars(run.split))


def sidebar(picker=True):
    """The run picker shared by every page (``picker`` False: the run is named, not chosen, as
    in an exercise that fixes it)."""
    runs = available_runs()
    st.sidebar.header("Run")
    if not runs:
        st.sidebar.info("No run yet: train one on the Train page.")
        return
    labels = [entry["label"] for entry in runs]
    paths = [str(entry["path"]) for entry in runs]
    # the run this session looks at (picked here, opened by a link, a page or a test), else the first
    current = st.session_state.get("run_path")
    index = paths.index(current) if current in paths else 0
    if picker:
        label = st.sidebar.selectbox("Run to explore", labels, index=index,
                                     help="The bundled demo run, or any run saved from the Train page "
                                          "or the CLI.")
    else:
        label = labels[index]
        st.sidebar.markdown(f"**{label}**")
    st.session_state["run_path"] = paths[labels.index(label)]
    shared = current_run()
    if shared is not None:
        run = shared.run
        m = run.metrics
        st.sidebar.caption(f"{run.dataset} · {run.config.method} · {run.config.arch} · "
                           f"{run.tasks_done} task(s)")
        if m:
            st.sidebar.metric("Average TAw accuracy", f"{m['avg_acc_taw'][-1]:.1f}%",
                              help="Task-aware: the task label is given, "
                                   "each task predicted by its own subnetwork.")
            st.sidebar.metric("Average TAg accuracy", f"{m['avg_acc_tag'][-1]:.1f}%",
                              help="Task-agnostic: the task is unknown and must be recognised first.")


def data_tasks(run):
    """The run's tasks with their images, or (None, message) when the data set is not on this
    machine (e.g. a deleted image folder): ``(tasks, None)`` otherwise."""
    try:
        return run_tasks(run)[:run.tasks_done], None
    except UserError as error:
        return None, (f"The data set of this run ({run.dataset}) is not available here, so its test images "
                      f"and reference images cannot be shown ({error}) Upload an image instead.")


class ReferenceJob:
    """Relevance-maximisation references of one run, computed once in a background thread."""

    def __init__(self, shared, tasks):
        self.result, self.error = None, None
        # not a daemon: torch must not be torn down under it when the process exits
        self.thread = threading.Thread(target=self._work, args=(shared, tasks), name="references")
        self.thread.start()

    def _work(self, shared, tasks):
        from rerelrp_core.pathways import unit_references
        try:
            with shared.borrow() as run:
                self.result = unit_references(run.learner, tasks)
        except Exception as error:  # shown on the page instead of references; the page stays alive
            self.error = f"{type(error).__name__}: {error}"


_REFERENCE_JOBS = weakref.WeakKeyDictionary()   # SharedRun -> its ReferenceJob
_REFERENCE_LOCK = threading.Lock()


def references(shared, tasks):
    """The run's ReferenceJob: started by the first session that asks, shared by all (it goes
    with the cached run when that is dropped)."""
    with _REFERENCE_LOCK:
        if shared not in _REFERENCE_JOBS:
            _REFERENCE_JOBS[shared] = ReferenceJob(shared, tasks)
        return _REFERENCE_JOBS[shared]


_RESULTS = weakref.WeakKeyDictionary()   # SharedRun -> OrderedDict of computed results
_RESULTS_LOCK = threading.Lock()


class _Result:
    """One cached computation; sessions that ask while it runs wait for it instead of repeating it."""

    def __init__(self):
        self.done = threading.Event()
        self.value, self.error = None, None


def memo(shared, key, compute, size=64):
    """``compute()`` once per ``key`` for run ``shared``, shared by every session (the last ``size``
    keys per run are kept): a click redraws the page from what an earlier rerun computed, and many
    people looking at the same image of the same run (a class, a demo) pay for it once, even when
    they all ask at the same moment. A failed computation is not kept."""
    with _RESULTS_LOCK:
        store = _RESULTS.setdefault(shared, collections.OrderedDict())
        result, mine = store.get(key), key not in store
        if mine:
            result = store[key] = _Result()
            while len(store) > size:
                store.popitem(last=False)
        store.move_to_end(key)
    if mine:
        try:
            result.value = compute()
        except BaseException as error:
            result.error = error
            with _RESULTS_LOCK:
                if store.get(key) is result:
                    del store[key]
            raise
        finally:
            result.done.set()
    result.done.wait()
    if result.error is not None:      # a copy: each session's traceback is its own
        raise copy.copy(result.error) from result.error
    return result.value


def image_key(x):
    """What the model sees decides every result: its bytes are the cache key of an image."""
    return hashlib.sha1(x.numpy().tobytes()).hexdigest()


def explanation(shared, x):
    """:func:`~rerelrp_core.explain.explain_image` of ``x`` on a borrowed replica, cached per run."""
    def compute():
        with shared.borrow() as run:
            return explain_image(run, x)
    return memo(shared, (image_key(x), "explain"), compute)


def pruning_curve(shared, task):
    """The run's :meth:`~rerelrp_core.learners.rerelrp.ReReLRP.pruning_curve` for ``task`` (its
    validation data), on a borrowed replica, cached per run: a slider move only reads it."""
    def compute():
        with shared.borrow() as run:
            return run.learner.pruning_curve(task)
    return memo(shared, ("pruning curve", task.index), compute)


def drift(shared, x, task, target_row):
    """:func:`~rerelrp_core.explain.explanation_drift` of ``x`` (its heatmap after every task from
    ``task`` on), cached per run."""
    def compute():
        with shared.borrow() as run:
            return explanation_drift(run, x, task, target_row)
    return memo(shared, (image_key(x), "drift", task, target_row), compute)


def outcomes(shared, tasks):
    """:func:`~rerelrp_core.forgetting.traced_outcomes` of the run (its per-image outcomes of every
    step and how they were obtained), computed once per run for runs saved without them."""
    def compute():
        with shared.borrow() as run:
            return traced_outcomes(run, tasks)
    return memo(shared, ("outcomes",), compute)


def final_outcomes(shared, tasks):
    """:func:`~rerelrp_core.forgetting.last_outcomes` of the run, computed once per run."""
    def compute():
        with shared.borrow() as run:
            return last_outcomes(run, tasks)
    return memo(shared, ("last outcomes",), compute)


def what_moved(shared, x, task, target_row, step):
    """:func:`~rerelrp_core.forgetting.image_change` of ``x`` between its task and ``step``, cached
    per run."""
    def compute():
        with shared.borrow() as run:
            return image_change(run, x, task, target_row, step)
    return memo(shared, (image_key(x), "moved", task, target_row, step), compute)


def pathway(shared, x, task, target=None, units=None, layers=None):
    """:func:`~rerelrp_core.pathways.explain_pathway` of ``x`` through ``task``'s subnetwork, on a
    borrowed replica, cached per run: the graph's (top 6 units per shown layer, every class of the
    task), or only the given ``units`` (one unit's heatmap: the smallest pass). ``layers``: the
    unit layers shown (None: all)."""
    layers = None if layers is None else tuple(sorted(layers))

    def compute():
        with shared.borrow() as run:
            if units is not None:
                return explain_pathway(run.learner, x, task, target, top_units=1, units=units, layers=layers)
            return explain_pathway(run.learner, x, task, target, top_units=6, top_edges=4, classes=True,
                                   layers=layers)
    frozen = None if units is None else tuple(None if u is None else tuple(u) for u in units)
    return memo(shared, (image_key(x), "pathway", task, target, frozen, layers), compute)


def default_layers(n_layers, most=6):
    """The unit layers a pathway shows at first: all of a small network, else ``most`` spread
    evenly from the first to the last."""
    if n_layers <= most + 2:
        return None
    return sorted({round(k * (n_layers - 1) / (most - 1)) for k in range(most)})
