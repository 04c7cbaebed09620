"""Explore page speed, measured server-side: the page script's own time for a new image and for a
unit click (AppTest runs the real page script in this process, without a browser), the pathway
computation alone, and the relevance-maximisation references of whole demo runs.

    .venv/bin/python bench/explore_speed.py [--images 10]

Targets (issue "Pathways that explain", CPU, demo run): new image <= 1 s, unit click <= 0.5 s,
references <= 10 s per run. Prints the machine (device, torch threads, load average) with them.
"""
import argparse
import json
import statistics
import sys
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
    at.switch_page("pages/explore.py").run()          # warm-up: opens the run and its data
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


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args()
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
