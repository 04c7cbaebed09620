"""The Streamlit app through AppTest: every page with the bundled demo run and with a run freshly
trained from the Train page, uploads good and bad."""
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui.state
from ui.report import run_report
from ui.state import open_run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "samples" / "digit-3.png"


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(ui.state, "RUNS_DIR", tmp_path)
    return tmp_path


def page(name):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page(f"views/{name}.py")
    return at.run()


def no_failures(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at):
    return {m.label: m.value for m in at.metric}


def png_bytes(array):
    """PNG bytes of an array (uint16 arrays become 16-bit grey PNGs)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_demo_run_is_there():
    assert (ui.state.DEMO_RUN / "run.json").exists()
    assert SAMPLE.exists()


def test_explore_demo_test_sample(runs_dir):
    at = page("explore")
    no_failures(at)
    shown = metrics(at)
    assert shown["Recognised task"].startswith("task ")
    assert shown["Predicted class"] in {str(d) for d in range(10)}
    # the chain probabilities and the pathway graph; the deciding units' and every subnetwork's
    # heatmap as images with their captions
    assert len(at.get("plotly_chart")) >= 2
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert sum(c.startswith("task ") and ": " in c for c in captions) == 5, captions
    assert any(s.label == "Subnetwork" for s in at.selectbox)
    assert any(m.value.startswith("Its nearest class is") for m in at.markdown)   # class Gaussians
    assert any("LRP health ✓" in c.value for c in at.caption), [c.value for c in at.caption]


def test_explore_a_run_recognised_by_forests(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    shutil.copytree(ROOT / "tests" / "fixtures" / "runs" / "v1-rerelrp", runs_dir / "forest")
    at.session_state["run_path"] = str(runs_dir / "forest")
    at.switch_page("views/explore.py").run()
    no_failures(at)
    assert any(m.value.startswith("The recogniser chain gives task") for m in at.markdown)


def pathway_figure(at):
    chart = next(c for c in at.get("plotly_chart") if c.proto.id and "pathway" in c.proto.id)
    return json.loads(chart.proto.spec)


def click(at, customdata):
    """What a click on a pathway node sends: the chart's selection state."""
    at.session_state["pathway"] = {"selection": {"points": [{"curve_number": 0, "point_number": 0,
                                                             "point_index": 0, "customdata": customdata}],
                                                 "point_indices": [0], "box": [], "lasso": []}}
    return at.run()


def test_clicking_a_unit_shows_what_it_sees_with_its_true_owner(runs_dir):
    at = page("explore")
    nodes = [d for trace in pathway_figure(at)["data"] for d in trace.get("customdata", []) if d[0] >= 0]
    assert len(nodes) >= 6
    owners = open_run(ui.state.DEMO_RUN).run.learner.unit_owners()
    names = open_run(ui.state.DEMO_RUN).run.layer_names
    for layer, unit in (nodes[0], nodes[-1]):
        click(at, [layer, unit])
        no_failures(at)
        owner = int(owners[layer][unit])
        title = f"What {names[layer]}/{unit} sees — frozen by task {owner}"
        assert any(m.value == f"#### {title}" for m in at.markdown), [m.value for m in at.markdown]
        # the graph draws the same owner for it
        traces = [t for t in pathway_figure(at)["data"] if [layer, unit] in t.get("customdata", [])]
        assert traces[0]["name"] == f"task {owner}"
    job = ui.state.references(open_run(ui.state.DEMO_RUN),
                              ui.state.run_tasks(open_run(ui.state.DEMO_RUN).run))
    job.thread.join(timeout=60)
    at.run()
    assert any("most relevant" in m.value for m in at.markdown), [m.value for m in at.markdown]
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert sum(" · R +" in caption for caption in captions) >= 1, captions


def test_clicking_the_other_class_explains_it(runs_dir):
    at = page("explore")
    before = pathway_figure(at)
    other = next(d for t in before["data"] for d in t.get("customdata", []) if d[0] == -2
                 and "explained" not in t["text"][t["customdata"].index(d)])
    click(at, other)
    no_failures(at)
    after = pathway_figure(at)
    assert after["layout"]["title"]["text"] != before["layout"]["title"]["text"]


def test_overlay_marks_shared_units(runs_dir):
    at = page("explore")
    overlay = next(s for s in at.selectbox if s.label == "Overlay a second subnetwork")
    shared = []
    for other in overlay.options[1:]:
        next(s for s in at.selectbox if s.label == "Overlay a second subnetwork").set_value(
            int(other.split()[-1])).run()
        no_failures(at)
        shared += [t for t in pathway_figure(at)["data"] if "also in task" in t.get("name", "")]
    assert shared, "no other subnetwork shares a unit with the recognised one"


def test_explore_a_method_without_masks(runs_dir):
    """Fine-tuning has no subnetworks and no owners: the page says nothing about freezing."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["run_path"] = str(ui.state.DEMO_RUNS / "finetune")
    at.switch_page("views/explore.py").run()
    no_failures(at)
    assert not any(s.label == "Overlay a second subnetwork" for s in at.selectbox)
    layer, unit = next(d for t in pathway_figure(at)["data"] for d in t.get("customdata", []) if d[0] >= 0)
    click(at, [layer, unit])
    no_failures(at)
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any("frozen by" in text or "(free)" in text for text in shown), shown
    assert "frozen by" not in json.dumps(pathway_figure(at))


def upload(at, name, data, mime="image/png"):
    if not at.file_uploader:            # only the open tab is drawn
        at.session_state["explore_source"] = "Upload or sample"
        at.run()
    at.file_uploader[0].set_value((name, data, mime))
    return at.run()


def test_explore_upload_real_image(runs_dir):
    at = upload(page("explore"), "digit-3.png", SAMPLE.read_bytes())
    no_failures(at)
    assert metrics(at)["Predicted class"] == "3"
    assert len(at.get("plotly_chart")) >= 2
    # only the open tab is drawn: looking at the test images and back keeps the uploaded image
    for tab in ("Test images", "Upload or sample"):
        at.session_state["explore_source"] = tab
        at.run()
        no_failures(at)
        assert metrics(at)["Predicted class"] == "3"
        assert any(img.caption == "What the model sees: digit-3.png"
                   for element in at.get("image") for img in element.proto.imgs)


@pytest.mark.parametrize("name, data, message", [
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image"),
    ("empty.png", b"", "empty"),
    ("truncated.png", SAMPLE.read_bytes()[:200], "truncated or corrupt"),
    ("script.png", b"#!/bin/sh\nrm -rf /\n", "not an image"),
])
def test_explore_bad_uploads_keep_the_page_alive(runs_dir, name, data, message):
    at = upload(page("explore"), name, data)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "Recognised task" not in metrics(at)
    # the session goes on: a test image from the gallery works
    at.session_state["explore_source"] = "Test images"
    at.run()
    assert "Recognised task" not in metrics(at) and not at.exception    # still the broken upload
    at.pills(key="gallery-0").set_value(0).run()
    no_failures(at)
    assert "Recognised task" in metrics(at)


@pytest.mark.parametrize("data", [
    png_bytes(np.dstack([np.full((40, 30, 3), 200, np.uint8), np.full((40, 30), 128, np.uint8)])),  # alpha
    png_bytes((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)),                  # 16-bit
    png_bytes(np.random.default_rng(0).integers(0, 255, (900, 1200, 3), dtype=np.uint8)),             # large
])
def test_explore_unusual_images(runs_dir, data):
    at = upload(page("explore"), "odd.png", data)
    no_failures(at)
    assert metrics(at)["Recognised task"].startswith("task ")


def test_explore_run_whose_data_set_is_gone(runs_dir):
    """A run trained on an image folder that was deleted since: uploads and samples still work; the
    gallery and the reference images say why they are not there."""
    shutil.copytree(ui.state.DEMO_RUN, runs_dir / "gone")
    state = json.loads((runs_dir / "gone" / "run.json").read_text())
    state["dataset"] = f"folder:{runs_dir / 'deleted-images'}"
    (runs_dir / "gone" / "run.json").write_text(json.dumps(state))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["run_path"] = str(runs_dir / "gone")
    at.switch_page("views/explore.py").run()
    no_failures(at)
    assert any("not available here" in i.value for i in at.info), [i.value for i in at.info]
    at.session_state["explore_source"] = "Upload or sample"
    at.run()
    at.pills(key="samples").set_value("digit-3.png").run()      # a bundled sample
    no_failures(at)
    assert metrics(at)["Predicted class"] == "3"
    layer, unit = next(d for t in pathway_figure(at)["data"] for d in t.get("customdata", []) if d[0] >= 0)
    click(at, [layer, unit])
    no_failures(at)
    assert any("not available here" in i.value for i in at.info)
    assert not any("most relevant" in m.value for m in at.markdown)


def test_masking_page_and_ablation(runs_dir):
    at = page("masking")
    no_failures(at)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Reuse: what each task's subnetwork is made of" in titles
    before = len(at.get("plotly_chart"))
    owner = next(s for s in at.selectbox if s.label == "Units owned by")
    owner.set_value(0).run()
    no_failures(at)
    assert len(at.get("plotly_chart")) == before + 1


def select(at, key, customdata):
    """What a click on a plotly chart's point sends: the chart's selection state."""
    at.session_state[key] = {"selection": {"points": [{"curve_number": 1, "point_number": 0, "point_index": 0,
                                                       "customdata": customdata}],
                                           "point_indices": [0], "box": [], "lasso": []}}
    return at.run()


def test_forgetting_page_with_drift(runs_dir):
    at = page("forgetting")
    no_failures(at)
    shown = metrics(at)
    assert shown["TAw forgetting"] == "0.00"
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "")
              for c in at.get("plotly_chart")]
    for title in ("Task-aware accuracy (%)", "Average task-agnostic accuracy", "Drift of the explanation"):
        assert any(t.startswith(title) for t in titles), titles
    assert sum(t.startswith("One test image") or "after task" in t for t in titles) >= 1
    # the cost table: one row per demo run on the same split, replay-free ReReLRP keeps no image
    costs = next(d.value for d in at.dataframe if "run" in d.value.columns).set_index("run")
    assert len(costs) == 7 and costs.loc[costs.index.str.startswith("rerelrp"), "images (kB)"].iloc[0] == 0
    assert costs.loc[costs.index.str.startswith("joint"), "images (kB)"].iloc[0] > 1000
    assert costs.loc[costs.index.str.startswith("icarl"), "images (kB)"].iloc[0] == 2000 * 28 * 28 / 1e3
    assert costs.loc[costs.index.str.startswith("replay"), "images (kB)"].iloc[0] == 2000 * 28 * 28 / 1e3


def traced_cell(at):
    """(lost, recovered, images, change) from the traced cell's sentence."""
    import re
    text = next(m.value for m in at.markdown if " lost**, " in m.value)
    pattern = r"\*\*(\d+) lost\*\*, (\d+) recovered of ([\d,]+) test images .* = ([-+]\d+\.\d+) points"
    lost, recovered, images, change = re.search(pattern, text).groups()
    return int(lost), int(recovered), int(images.replace(",", "")), float(change), text


def test_a_matrix_cell_click_shows_the_images_it_lost(runs_dir):
    at = page("forgetting")
    demo = open_run(ROOT / "assets" / "demo-runs" / "rerelrp").run.metrics
    tag = demo["acc_tag"]
    at = select(at, "matrix-tag", [3, 1])
    no_failures(at)
    lost, recovered, images, change, text = traced_cell(at)
    assert text.startswith("**Task 1, task-agnostic:**") and "after task 3" in text
    assert images == 200 and change == pytest.approx(tag[3][1] - tag[1][1], abs=0.01)
    assert (recovered - lost) / images * 100 == pytest.approx(change, abs=0.01)
    assert lost > 0
    table = next(d.value for d in at.dataframe if "p lost" in d.value.columns)
    assert len(table) == lost and set(table["then"]) != set(table["now"]) and (table["task"] == 1).all()
    assert any(m.value.startswith("#### Why test image") for m in at.markdown)
    # the task-aware matrix: ReReLRP's frozen subnetworks lose nothing
    at = select(at, "matrix-taw", [4, 0])
    assert traced_cell(at)[:2] == (0, 0)
    # a task-confusion cell: the images of task 4 taken for task 2 after the last task
    at = select(at, "confusion", [4, 2])
    no_failures(at)
    heading = next(m.value for m in at.markdown
                   if m.value.startswith("**Task 4's images recognised as task 2**"))
    assert heading.endswith(f": {demo['task_confusion'][4][2]}")
    # two runs on the same split, image by image
    at.selectbox(key="pair_other").set_value("finetune (demo finetune)").run()
    no_failures(at)
    assert any("Test images after the last task" in c.proto.spec for c in at.get("plotly_chart"))
    # right in ReReLRP and wrong in fine-tuning: at least as many as ReReLRP gets right beyond it
    kept = next(m.value for m in at.markdown if m.value.startswith("**Right in this run, wrong in finetune"))
    finetune = open_run(ROOT / "assets" / "demo-runs" / "finetune").run.metrics["acc_tag"][-1]
    assert int(kept.split(":** ")[1].split()[0]) >= 2 * (sum(tag[-1]) - sum(finetune)) > 0


def test_train_page_trains_saves_and_the_new_run_is_explorable(runs_dir):
    at = page("train")
    no_failures(at)
    [s for s in at.selectbox if s.label == "Data set"][0].set_value("digits")
    [n for n in at.number_input if n.label == "Tasks"][0].set_value(2)
    [n for n in at.number_input if n.label == "Max epochs per task"][0].set_value(2)
    [t for t in at.text_input if t.label == "Run name"][0].set_value("tiny")
    at.button[0].click().run()
    no_failures(at)
    job = at.session_state["job"]
    deadline = time.time() + 120
    while job.active and time.time() < deadline:
        time.sleep(0.5)
    assert job.state == "finished", job.error
    at.run()
    assert any("Finished and saved as tiny" in s.value for s in at.success), (
        [s.value for s in at.success], [i.value for i in at.info], [w.value for w in at.warning],
        [e.value for e in at.error])
    assert (runs_dir / "tiny" / "run.json").exists()
    assert len(job.run.history["acc_taw"]) == 2
    # the clock stops when the job ends ("Saved runs" listing it without a reload: tests/test_browser.py)
    elapsed = job.elapsed
    time.sleep(1.1)
    assert job.elapsed == elapsed
    # runs trained here keep per-task snapshots, so the Forgetting page's drift strip has them
    assert len(job.run.snapshots) == 2
    # its HTML report (what "Saved runs" offers) holds its own figures and numbers
    report = run_report(open_run(runs_dir / "tiny").run, "tiny")
    assert "Run tiny" in report and f"{job.run.metrics['avg_acc_tag'][-1]:.2f}%" in report
    # the fresh run shows up in the picker and every page works with it
    for name in ("explore", "masking", "forgetting"):
        other = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        other.session_state["run_path"] = str(runs_dir / "tiny")
        other.switch_page(f"views/{name}.py").run()
        assert not other.exception, (name, [e.value for e in other.exception])
        assert other.session_state["run_path"] == str(runs_dir / "tiny")      # the sidebar kept it
        assert not other.error or name == "forgetting", (name, [e.value for e in other.error])
        if name == "forgetting":
            assert not any("kept no per-task snapshots" in i.value for i in other.info)
        if name == "explore":      # runs trained now recognise tasks by class Gaussians
            assert any(m.value.startswith("Its nearest class is") for m in other.markdown)
            assert any(m.value.startswith("| task | nearest class | distance |") for m in other.markdown)


def test_cancel_then_resume_from_the_train_page(runs_dir):
    at = page("train")
    [s for s in at.selectbox if s.label == "Data set"][0].set_value("digits")
    [n for n in at.number_input if n.label == "Tasks"][0].set_value(5)
    [n for n in at.number_input if n.label == "Max epochs per task"][0].set_value(3)
    [t for t in at.text_input if t.label == "Run name"][0].set_value("resumed")
    at.button[0].click().run()
    job = at.session_state["job"]
    deadline = time.time() + 120
    while (job.run is None or job.run.tasks_done < 1) and job.active and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    while job.active and time.time() < deadline:
        time.sleep(0.1)
    assert job.state == "cancelled"
    done = job.run.tasks_done
    assert 1 <= done < 5
    at.run()
    resume = [b for b in at.button if b.label.startswith("Resume from task")]
    assert resume and resume[0].label == f"Resume from task {done}"
    resume[0].click().run()
    resumed = at.session_state["job"]
    assert resumed is not job
    while resumed.active and time.time() < deadline + 120:
        time.sleep(0.2)
    assert resumed.state == "finished", resumed.error
    assert resumed.run.tasks_done == 5 and (runs_dir / "resumed" / "run.json").exists()


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    """A torchvision MobileNetV3-Small (53 unit layers) trained on two digit tasks, saved."""
    from rerelrp_core.config import make_config
    from rerelrp_core.data import SplitConfig, load_digits
    from rerelrp_core.runs import save_run
    from rerelrp_core.sequence import train_sequence
    config = make_config(method="rerelrp", arch="torchvision:mobilenet_v3_small", input_size=32, epochs=2,
                         lr=0.01, batch_size=32, ref_per_class=8, device="cpu")
    run = train_sequence(load_digits(), SplitConfig(n_tasks=2, classes_per_task=[2, 2], seed=0), config)
    return save_run(run, tmp_path_factory.mktemp("deep") / "mobilenet")


def test_explore_a_torchvision_network_with_chosen_layers(runs_dir, deep_run):
    """A deep network opens on the Explore page: the graph shows six of its 53 unit layers, the
    reader can choose others, and a click on a deep unit shows what it sees."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    shutil.copytree(deep_run, runs_dir / "mobilenet")
    at.session_state["run_path"] = str(runs_dir / "mobilenet")
    at.switch_page("views/explore.py").run()
    no_failures(at)
    chooser = next(m for m in at.multiselect if m.label == "Layers in the graph")
    assert len(chooser.value) == 6
    names = open_run(deep_run).run.layer_names
    shown = {d[0] for trace in pathway_figure(at)["data"] for d in trace.get("customdata", []) if d[0] >= 0}
    assert shown <= set(chooser.value) and len(shown) >= 5
    chooser.set_value([3, 20, 52]).run()
    no_failures(at)
    nodes = [d for trace in pathway_figure(at)["data"] for d in trace.get("customdata", []) if d[0] >= 0]
    assert {layer for layer, _ in nodes} == {3, 20, 52}
    layer, unit = next(n for n in nodes if n[0] == 20)
    click(at, [layer, unit])
    no_failures(at)
    assert any(m.value.startswith(f"#### What {names[20]}/{unit} sees") for m in at.markdown)
    assert any("LRP health" in c.value for c in list(at.caption) + list(at.warning))
    shared = open_run(runs_dir / "mobilenet")      # the page started the unit's reference images
    ui.state.references(shared, ui.state.run_tasks(shared.run)).thread.join(timeout=120)


def test_masking_groups_a_deep_network_by_stage(runs_dir, deep_run):
    """53 unit layers: capacity bars per stage by default, one per layer on request."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    shutil.copytree(deep_run, runs_dir / "mobilenet")
    at.session_state["run_path"] = str(runs_dir / "mobilenet")
    at.switch_page("views/masking.py").run()
    no_failures(at)

    def capacity_bars():
        chart = next(c for c in at.get("plotly_chart") if "Units owned per" in c.proto.spec)
        return json.loads(chart.proto.spec)["data"][0]["x"]
    stages = capacity_bars()
    assert "features.4" in stages and len(stages) < 20
    next(t for t in at.toggle if t.label == "One bar per layer").set_value(True).run()
    no_failures(at)
    assert len(capacity_bars()) == 53


def test_explore_a_run_of_a_users_own_module(runs_dir):
    """A network from a Python file (PATH.py:FUNCTION) trains from Python and opens on the Explore
    page with its heatmaps and pathway graph (all of its 5 unit layers: no layer chooser)."""
    from rerelrp_core.config import make_config
    from rerelrp_core.data import SplitConfig, load_digits
    from rerelrp_core.runs import save_run
    from rerelrp_core.sequence import train_sequence
    own = ROOT / "tests" / "models" / "own_net.py"
    config = make_config(method="rerelrp", arch=f"{own}:build", epochs=3, lr=0.01, device="cpu")
    run = train_sequence(load_digits(), SplitConfig(n_tasks=2, classes_per_task=[2, 2], seed=0), config)
    assert run.metrics["forgetting_taw"] == 0.0
    save_run(run, runs_dir / "own")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["run_path"] = str(runs_dir / "own")
    at.switch_page("views/explore.py").run()
    no_failures(at)
    assert not any(m.label == "Layers in the graph" for m in at.multiselect)
    figure = pathway_figure(at)
    nodes = [d for trace in figure["data"] for d in trace.get("customdata", []) if d[0] >= 0]
    assert {layer for layer, _ in nodes} == set(range(5))
    # the input, its heatmap and one relevance thumbnail per unit node
    assert len(figure["layout"]["images"]) == 2 + len(nodes)


def test_train_page_offers_torchvision_models_and_the_servers_weights(runs_dir, monkeypatch, tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet18-imagenet.safetensors").write_bytes(b"")
    monkeypatch.setattr(ui.state, "WEIGHTS_DIR", tmp_path / "weights")
    at = page("train")
    no_failures(at)
    model = next(s for s in at.selectbox if s.label == "Model")
    assert "torchvision:mobilenet_v3_small" in model.options and "cnn" in model.options
    weights = next(s for s in at.selectbox if s.label == "Start from weights")
    assert "resnet18-imagenet.safetensors" in weights.options
