"""The teaching views through AppTest on the bundled demo runs: the tour from first step to last,
forgetting side by side, and the acc_drop trade-off slider."""
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.state

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(ui.state, "RUNS_DIR", tmp_path)
    return tmp_path


def no_failures(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def titles(at):
    return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "")
            for c in at.get("plotly_chart")]


def test_the_tour_is_the_first_page_and_walks_to_its_end(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    seen = []
    for step in range(4):
        no_failures(at)
        progress = at.get("progress")[0].proto.text
        assert progress.startswith(f"Step {step + 1} of 4"), progress
        assert at.get("plotly_chart"), f"step {step + 1} shows no figure"
        seen.append(titles(at))
        back, forward = (b for b in at.button if b.label in ("← Back", "Next →"))
        assert back.disabled == (step == 0) and forward.disabled == (step == 3)
        if step < 3:
            started = time.perf_counter()
            forward.click().run()
            print(f"step {step + 2}: {time.perf_counter() - started:.2f} s")
    assert "Fine-tuning: task-agnostic accuracy (%)" in seen[0]
    assert "Capacity meter: units each task froze" in seen[1]
    assert "Which task is this image from?" in seen[2]
    assert "What each method keeps besides the network" in seen[3]
    memory = next(c for c in at.get("plotly_chart") if "keeps besides" in c.proto.spec)
    traces = json.loads(memory.proto.spec)["data"]
    bars = {trace["name"]: dict(zip(trace["x"], trace["y"])) for trace in traces if trace["type"] == "bar"}
    assert bars["images"]["replay"] == bars["images"]["icarl"] == 2000 * 28 * 28 / 1e3
    assert bars["images"].get("rerelrp", 0) == 0
    # back to the start
    [b for b in at.button if b.label == "← Back"][0].click().run()
    assert at.get("progress")[0].proto.text.startswith("Step 3 of 4")


def test_forgetting_side_by_side_compares_two_runs(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("views/forgetting.py").run()
    no_failures(at)
    beside = next(s for s in at.selectbox if s.label == "Beside")
    assert beside.value.startswith("finetune")
    scatter = next(c for c in at.get("plotly_chart") if "against the task's accuracy loss" in c.proto.spec)
    lines = {t["name"]: t for t in json.loads(scatter.proto.spec)["data"]}
    rerelrp = next(v for k, v in lines.items() if k.startswith("rerelrp"))
    finetune = next(v for k, v in lines.items() if k.startswith("finetune"))
    assert max(rerelrp["x"]) < 1e-6 and max(rerelrp["y"]) == 0      # frozen: no drift, nothing lost
    assert max(finetune["x"]) > 0.05 and max(finetune["y"]) > 0       # fine-tuning drifts and forgets


def test_acc_drop_slider_moves_along_the_pruning_curve(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["run_path"] = str(ui.state.DEMO_RUN)
    at.switch_page("views/masking.py").run()
    no_failures(at)
    slider = next(s for s in at.slider if s.label == "acc_drop (points)")

    def kept():
        value = next(m.value for m in at.metric if m.label == "Units it would keep")
        return int(value.split(" of ")[0])

    slider.set_value(0.0).run()
    strict = kept()
    slider.set_value(20.0).run()
    started = time.perf_counter()
    loose = kept()
    slider.set_value(5.0).run()
    print(f"slider move: {time.perf_counter() - started:.2f} s")
    no_failures(at)
    assert loose < strict
    assert loose <= kept() <= strict


DEMOS = sorted(p.name for p in (ROOT / "assets" / "demo-runs").iterdir() if (p / "run.json").exists())


def demo_metrics(name):
    return json.loads((ROOT / "assets" / "demo-runs" / name / "metrics.json").read_text())


@pytest.mark.parametrize("name", DEMOS)
def test_the_tours_words_agree_with_every_bundled_runs_metrics(name):
    """Every number and claim the tour writes about a run, read back from the words and checked
    against the run's own metrics (the tour once said "the newest classes win every answer" beside
    a matrix where the newest task had 50 % and the one before 98 %)."""
    import re

    import numpy as np

    from ui.claims import forgetting_words, images_kept, protection_words
    m = demo_metrics(name)
    words = forgetting_words(m)
    said = {int(t): float(a) for t, a in re.findall(r"task (\d+) ([\d.]+) %", words)}
    assert said == {t: round(a, 1) for t, a in enumerate(m["acc_tag"][-1])}
    share, top = re.search(r"(\d+)% of all its answers name a class of task (\d+)", words).groups()
    answers = np.array(m["task_confusion"]).sum(0)
    assert answers[int(top)] == answers.max()
    assert int(share) == round(100 * answers.max() / answers.sum())
    assert ("trained against its own classes only" in words) == (m["config"]["loss_scope"] == "task")
    protection = protection_words(m)
    assert ("exactly 0" in protection) == (m["forgetting_taw"] == 0)
    assert f"{m['forgetting_taw']:.2f} points" in protection
    kept = images_kept(m, 28 * 28)
    expected = {"replay": m["config"]["memory"], "icarl": m["config"]["memory"]}.get(m["method"])
    if expected is not None:
        assert kept == expected
    if m["method"] in ("rerelrp", "finetune", "ewc", "lwf"):
        assert kept == 0


def test_the_tour_shows_those_words(runs_dir):
    from ui.claims import forgetting_words, protection_words
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    no_failures(at)
    assert any(forgetting_words(demo_metrics("finetune")) in m.value for m in at.markdown)
    [b for b in at.button if b.label == "Next →"][0].click().run()
    assert any(protection_words(demo_metrics("rerelrp")) in m.value for m in at.markdown)
