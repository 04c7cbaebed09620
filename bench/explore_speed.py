"""Explore page speed, measured server-side: the page script's own time for a new image and for a
unit click (AppTest runs the real page script in this process, without a browser), the pathway
computation alone, and the relevance-maximisation references of whole demo runs.

    .venv/bin/python bench/explore_speed.py [--images 10]
    .venv/bin/python bench/explore_speed.py --sessions 8 [--train]

Targets (issue "Pathways that explain", CPU, demo run): new image <= 1 s, unit click <= 0.5 s,
references <= 10 s per run. Prints the machine (device, torch threads, load average) with them.

``--sessions N`` measures the server side under load instead: N sessions at once in this process
(as the server runs them: one thread each, shared caches, torch with one intra-op thread like
ui/serve.py), each opening Explore and then looking at 3 images of its own, optionally while a
training runs the way the Train page runs it (ui/jobs.py: a background thread at nice 10).
Unlike bench/load_test.py, no browser competes for the 2 cores.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamlit.testing.v1 import AppTest  # noqa: E402

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.data import load_dataset, make_tasks  # noqa: E402
from rerelrp_core.pathways import explain_pathway, unit_references  # noqa: E402
from rerelrp_core.runs import load_run  # noqa: E402

from common import machine, write_results  # noqa: E402

DEMOS = ROOT / "assets" / "demo-runs"


def timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def page_times(n_images):
    """Server-side seconds of Explore reruns: a new gallery image each time, then a unit click."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page("views/explore.py").run()          # warm-up: opens the run and its data
    new_image, unit_click = [], []
    for index in range(1, n_images + 1):
        at.session_state["explore_pick"] = ("test", index % 5, index)
        new_image.append(timed(at.run)[0])
        chart = next(c for c in at.get("plotly_chart") if "pathway" in c.proto.id)
        traces = json.loads(chart.proto.spec)["data"]
        nodes = [d for t in traces for d in t.get("customdata", []) if d[0] >= 0]
        at.session_state["pathway"] = {"selection": {"points": [{"customdata": nodes[index % len(nodes)]}],
                                                     "point_indices": [0], "box": [], "lasso": []}}
        unit_click.append(timed(at.run)[0])
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return new_image, unit_click


def summary(values):
    ordered = sorted(values)
    return {"median_s": round(statistics.median(ordered), 3), "max_s": round(ordered[-1], 3),
            "n": len(ordered)}


def session(number, first_view, new_image, start, link=None):
    """One visitor: open Explore (the default image), then three images of its own; or, with a
    ``link`` (query parameters), open that view, then rerun it three times as clicks on it would."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params.update(link or {})
    at.switch_page("views/explore.py")
    start.wait()
    first_view.append(timed(at.run)[0])
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    for k in range(3):
        if link is None:
            at.session_state["explore_pick"] = ("test", (number + k) % 5, 10 * number + k + 1)
        new_image.append(timed(at.run)[0])
        if at.exception:
            raise RuntimeError(at.exception[0].value)


SHARED_LINK = {"run": "demo:rerelrp", "image": "test:1:0", "subnetwork": "1", "unit": "conv2/1"}


def concurrent(n_sessions, train, link=None):
    """Server-side rerun times of ``n_sessions`` concurrent sessions (and a training, if asked),
    each on images of its own, or all opening the same ``link``."""
    import threading

    import torch

    from rerelrp_core.config import make_config
    from rerelrp_core.data import SplitConfig
    from ui.jobs import TrainingJob
    from ui.state import DEMO_RUN, preload
    torch.set_num_threads(1)
    preload(DEMO_RUN)           # what ui/serve.py does before the first visitor
    job = None
    if train:
        config = make_config(method="rerelrp", arch="cnn-small", epochs=5, device="cpu")
        job = TrainingJob("mnist5k", SplitConfig(n_tasks=5), config, Path("/tmp/explore-speed-runs"),
                          "load").start()
    # the page script's own time of every rerun (ui/timing.py), as a server logs it: without AppTest's
    # own work around each run (it scans installed packages for components on every session's start)
    timings = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    os.environ["RERELRP_TIMINGS"] = str(timings)
    first_view, new_image, start = [], [], threading.Barrier(n_sessions, timeout=600)
    threads = [threading.Thread(target=session, args=(i, first_view, new_image, start, link))
               for i in range(n_sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    del os.environ["RERELRP_TIMINGS"]
    script = sorted(json.loads(line)["seconds"] for line in timings.read_text().splitlines())
    training = "training alongside" if train else "no training"
    every = sorted(first_view + new_image)
    what = f"{n_sessions} sessions at once" + (" on one link" if link else "")
    again = "rerun of the same view" if link else "new image"
    rows = [{"what": f"{what}, first view ({training})", **summary(first_view),
             "p95_s": round(sorted(first_view)[min(n_sessions - 1, int(0.95 * n_sessions))], 3)},
            {"what": f"{what}, {again} ({training})", **summary(new_image), "target_s": 1.0},
            {"what": f"{what}, all reruns ({training})", **summary(every),
             "p95_s": round(every[min(len(every) - 1, int(0.95 * len(every)))], 3), "target_s": 1.0},
            {"what": f"{what}, all reruns, the page script's own time ({training})", **summary(script),
             "p95_s": round(script[min(len(script) - 1, int(0.95 * len(script)))], 3), "target_s": 1.0}]
    if job is not None:
        rows[-1]["training_state_at_end"] = job.state
        job.cancel()
        job.thread.join()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--sessions", type=int, help="measure this many concurrent sessions instead")
    parser.add_argument("--train", action="store_true", help="with --sessions: a training alongside")
    parser.add_argument("--same-link", action="store_true",
                        help=f"with --sessions: every session opens one shared link ({SHARED_LINK})")
    args = parser.parse_args()
    if args.sessions:
        rows = concurrent(args.sessions, args.train, SHARED_LINK if args.same_link else None)
        meta = machine("cpu")
        for row in rows:
            print(row)
        print(json.dumps(meta))
        name = (f"explore-concurrent-{args.sessions}{'-link' if args.same_link else ''}"
                f"{'-train' if args.train else ''}")
        write_results(name, rows, meta)
        return
    rows = []
    new_image, unit_click = page_times(args.images)
    rows.append({"what": "Explore rerun, new image (demo MNIST-5k)", **summary(new_image), "target_s": 1.0})
    rows.append({"what": "Explore rerun, unit click", **summary(unit_click), "target_s": 0.5})
    for name, dataset in (("rerelrp", "mnist5k"), ("fashion-rerelrp", "fashion-mnist")):
        run = load_run(DEMOS / name, device="cpu")
        tasks = make_tasks(load_dataset(dataset), run.split)
        pathway = [timed(lambda t=t: explain_pathway(run.learner, t.x_test[:1], t.index, classes=True))[0]
                   for t in tasks for _ in range(3)]
        rows.append({"what": f"explain_pathway alone ({name})", **summary(pathway)})
        seconds, _ = timed(lambda: unit_references(run.learner, tasks))
        rows.append({"what": f"unit_references ({name}, {sum(len(t.x_test) for t in tasks)} test images)",
                     "median_s": round(seconds, 3), "n": 1, "target_s": 10.0})
    meta = machine("cpu")
    for row in rows:
        worst = f"  (max {row['max_s']:.3f})" if "max_s" in row else ""
        target = f"  target {row['target_s']}" if "target_s" in row else ""
        print(f"{row['what']:<62} {row['median_s']:>7.3f} s{worst}{target}")
    print(json.dumps(meta))
    write_results("explore-speed", rows, meta)


if __name__ == "__main__":
    main()
