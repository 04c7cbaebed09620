"""Every view as a link, through AppTest on the bundled demo runs: a URL with every parameter
restores each page's state and is written back unchanged; values this server cannot show are
ignored in one sentence; the ready-made exercises work as handed out."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.state

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(ui.state, "RUNS_DIR", tmp_path)
    return tmp_path


def opened(page, params):
    """A fresh session opening ``page`` with query ``params``, as a browser following a link."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(params)
    at.switch_page(f"views/{page}.py")
    return at.run()


def no_failures(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def link_shown(at):
    return at.code[0].value


VIEWS = [
    ("explore", {"run": "demo:rerelrp", "image": "test:2:7", "subnetwork": "1", "overlay": "0",
                 "unit": "conv2/5", "class": "3"},
     {"explore_pick": ("test", 2, 7), "explore_subnetwork": 1, "explore_overlay": 0, "explore_unit": (1, 5),
      "explore_target": 3}),
    ("masking", {"run": "demo:rerelrp", "ablate": "1", "layer": "fc1", "task": "2", "acc_drop": "4.5"},
     {"ablate_owner": 1, "ablate_layer": "fc1", "curve_task": 2, "curve_acc_drop": 4.5}),
    ("forgetting", {"run": "demo:finetune", "matrix": "taw", "step": "3", "task": "1", "confusion_step": "2",
                    "confusion": "2,1"},
     {"forget_kind": "taw", "forget_step": 3, "forget_task": 1, "confusion_step": 2,
      "confusion_cell": (2, 1)}),
    ("tour", {"run": "demo:rerelrp", "step": "3"}, {"tour_step": 2}),
]


@pytest.mark.parametrize("page, params, state", VIEWS, ids=[v[0] for v in VIEWS])
def test_a_link_with_every_parameter_restores_the_view(runs_dir, page, params, state):
    at = opened(page, params)
    no_failures(at)
    assert not at.info or "ignored" not in at.info[0].value, at.info[0].value
    for key, value in state.items():
        assert at.session_state[key] == value, key
    assert at.session_state["run_path"].endswith(params["run"].split(":")[1])
    assert dict(at.query_params) == params          # written back as it came
    assert link_shown(at).endswith(f"/{'' if page == 'tour' else page}?" +
                                   "&".join(f"{k}={v}" for k, v in params.items()))


def test_what_a_link_restores_is_what_the_page_shows(runs_dir):
    at = opened("explore", VIEWS[0][1])
    no_failures(at)
    assert any(m.value.startswith("#### What conv2/5 sees") for m in at.markdown)
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert any("test image 7 of task 2" in caption for caption in captions), captions
    subnetwork = next(s for s in at.selectbox if s.label == "Subnetwork")
    assert subnetwork.value == 1
    at = opened("tour", {"step": "4"})
    assert at.get("progress")[0].proto.text.startswith("Step 4 of 4")
    at = opened("masking", {"run": "demo:rerelrp", "acc_drop": "4.5"})
    assert next(s for s in at.slider if s.label == "acc_drop (points)").value == 4.5


@pytest.mark.parametrize("page, params, ignored", [
    ("explore", {"run": "somebody-elses-run"}, "run=somebody-elses-run (no such run on this server)"),
    ("explore", {"run": "demo:rerelrp", "image": "test:9:0"}, "image=test:9:0 (the run has tasks 0 to 4)"),
    ("explore", {"run": "demo:rerelrp", "image": "test:1:99999"},
     "image=test:1:99999 (task 1 has test images 0 to 199); showing test image 0 of task 0"),
    ("explore", {"run": "demo:rerelrp", "unit": "conv9/1"}, "unit=conv9/1 (no unit layer 'conv9')"),
    ("explore", {"run": "demo:rerelrp", "unit": "conv2/999"}, "unit=conv2/999 (the run has units 0 to 31)"),
    ("explore", {"run": "demo:rerelrp", "image": "sample:../../etc/passwd"}, "(no such sample image)"),
    ("masking", {"run": "demo:rerelrp", "acc_drop": "lots"}, "acc_drop=lots (not a number)"),
    ("masking", {"run": "demo:rerelrp", "acc_drop": "0.3"}, "acc_drop goes from 0 to 20 in steps of 0.25"),
    ("forgetting", {"run": "demo:rerelrp", "step": "-1"}, "step=-1 (the run has tasks 0 to 4)"),
    ("forgetting", {"run": "demo:rerelrp", "matrix": "both"}, "matrix=both (choose taw or tag)"),
    ("tour", {"step": "9"}, "step=9 (the tour has steps 1 to 4)"),
    ("tour", {"colour": "red"}, "colour=red (not a setting of this page)"),
    ("tour", {"hide": "everything"}, "hide=everything (this page has no such control)"),
])
def test_a_bad_value_is_ignored_in_one_sentence(runs_dir, page, params, ignored):
    at = opened(page, params)
    no_failures(at)
    notes = [i.value for i in at.info if i.value.startswith("Part of this link was ignored")]
    assert len(notes) == 1 and ignored in notes[0] and "\n" not in notes[0], notes


def test_the_ready_made_exercises_work_as_handed_out(runs_dir):
    from ui.exercises import ready_made
    exercises = ready_made()
    assert len(exercises) >= 5
    assert {e["topic"] for e in exercises} >= {"forgetting", "pathways", "task recognition", "masking",
                                               "stability and plasticity"}
    listing = opened("exercises", {})
    no_failures(listing)
    assert len(listing.code) >= len(exercises) + 1          # each exercise's link, and this view's own
    for exercise in exercises:
        at = opened(exercise["page"], exercise["params"])
        no_failures(at)
        assert not at.info or "ignored" not in at.info[0].value, at.info[0].value
        assert any(m.value == f"**Exercise.** {exercise['params']['q']}" for m in at.markdown)
        hidden = exercise["params"]["hide"].split(",")
        labels = {s.label for s in at.selectbox} | {s.label for s in at.slider}
        assert ("Run to explore" in labels) == ("run" not in hidden)
        if "answer" in hidden:
            before = len(at.get("plotly_chart"))
            assert not any(m.label == "Recognised task" for m in at.metric)
            reveal = next(b for b in at.button if b.label == "Commit and reveal")
            assert reveal.disabled                           # nothing to commit yet
            at.text_input(key="exercise_answer").input("task 3").run()
            at.button(key="exercise_reveal").click().run()
            no_failures(at)
            assert at.success and at.success[0].value.startswith("Your answer: task 3.")
            assert len(at.get("plotly_chart")) > before      # the answer is shown now
