"""Every view as a link: the state of each page lives in its URL's query parameters.

A link names the run, the page's choices and, for an exercise, the controls to ``hide`` and a
question (``q``, with the text revealed afterwards in ``reveal``). Opening a link in a fresh browser
restores the view. A value that names nothing on this server (a run that is not here, a task or
unit out of range, an unknown parameter) is ignored and the page says so in one sentence. After
every rerun the page writes its state back into the URL, so the address bar always links to what
is shown; the sidebar shows the same link with a copy button.
"""
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

import streamlit as st

from rerelrp_core.errors import UserError
from ui.state import available_runs, open_run

EXERCISE = ("hide", "q", "reveal")      # what an exercise adds to a view's link
# what an exercise may hide, per page ("run" hides the sidebar's run picker on every page)
HIDEABLE = {"explore": {"image", "answer", "pathway"}, "masking": {"ablation", "acc_drop", "answer"},
            "forgetting": {"cell", "answer"}, "tour": {"nav"}, "train": set(), "exercises": set()}


@dataclass(frozen=True)
class Param:
    """One query parameter: its name in the URL, the session-state key it restores, how to read its
    text for a run (raise ValueError with the reason when it does not fit) and how to write a value."""
    name: str
    key: str
    read: Callable
    write: Callable = lambda value: None if value is None else str(value)


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise ValueError("not a whole number") from None


def _index(text, limit, what):
    value = _int(text)
    if not 0 <= value < limit:
        raise ValueError(f"the run has {what} 0 to {limit - 1}")
    return value


def _task(text, run):
    return _index(text, run.tasks_done, "tasks")


def _optional_task(text, run):
    return None if text == "none" else _task(text, run)


def _image(text, run):
    kind, _, rest = text.partition(":")
    if kind == "test":
        task, _, index = rest.partition(":")
        return ("test", _task(task, run), _int(index))
    if kind == "sample":
        from ui.state import ROOT
        if "/" in rest or "\\" in rest or not (ROOT / "assets" / "samples" / rest).is_file():
            raise ValueError("no such sample image")
        return ("sample", rest)
    raise ValueError("write test:TASK:INDEX or sample:FILE")


def _write_image(pick):
    if pick is None:
        return None
    if pick[0] == "test":
        return f"test:{pick[1]}:{pick[2]}"
    return f"sample:{pick[1]}" if pick[0] == "sample" else None      # an upload is not on the server


def _unit(text, run):
    name, _, unit = text.rpartition("/")
    if name not in run.layer_names:
        raise ValueError(f"no unit layer {name!r}")
    layer = run.layer_names.index(name)
    return (layer, _index(unit, run.model.layer_sizes()[layer], "units"))


def _write_unit(value):
    return None if value is None else f"{_run().layer_names[value[0]]}/{value[1]}"


def _class_row(text, run):
    return _index(text, sum(t.n_classes for t in run.tasks[:run.tasks_done]), "output rows")


def _layer(text, run):
    if text != "none" and text not in run.layer_names:
        raise ValueError(f"no unit layer {text!r}")
    return None if text == "none" else text


def _acc_drop(text, run):
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not 0 <= value <= 20 or value * 4 != int(value * 4):
        raise ValueError("acc_drop goes from 0 to 20 in steps of 0.25")
    return value


def _choice(*allowed):
    def read(text, run):
        if text not in allowed:
            raise ValueError(f"choose {' or '.join(allowed)}")
        return text
    return read


def _cell(text, run):
    row, _, column = text.partition(",")
    return (_task(row, run), _task(column, run))


def _write_cell(value):
    return None if value is None else f"{value[0]},{value[1]}"


TOUR_STEPS = 4


def _tour_step(text, run):
    """The tour's step, counted from 1 in the link as the tour shows it."""
    value = _int(text)
    if not 1 <= value <= TOUR_STEPS:
        raise ValueError(f"the tour has steps 1 to {TOUR_STEPS}")
    return value - 1


PAGES = {
    "explore": [Param("image", "explore_pick", _image, _write_image),
                Param("subnetwork", "explore_subnetwork", _task),
                Param("overlay", "explore_overlay", _optional_task),
                Param("unit", "explore_unit", _unit, _write_unit),
                Param("class", "explore_target", _class_row)],
    "masking": [Param("ablate", "ablate_owner", _optional_task),
                Param("layer", "ablate_layer", _layer),
                Param("task", "curve_task", _task),
                Param("acc_drop", "curve_acc_drop", _acc_drop, lambda v: f"{v:g}")],
    "forgetting": [Param("matrix", "forget_kind", _choice("taw", "tag")),
                   Param("step", "forget_step", _task),
                   Param("task", "forget_task", _task),
                   Param("confusion_step", "confusion_step", _task),
                   Param("confusion", "confusion_cell", _cell, _write_cell)],
    "tour": [Param("step", "tour_step", _tour_step, lambda value: None if value is None else str(value + 1))],
}
# per page: the key naming the run its state belongs to, and that state (cleared for another run)
PAGE_STATE = {
    "explore": ("explore_run", ("explore_pick", "explore_unit", "explore_target", "explore_subnetwork",
                                "explore_overlay", "seen-index", "seen-upload", "gallery_index",
                                "gallery_task", "explore_upload")),
    "forgetting": ("forget_run", ("forget_kind", "forget_step", "forget_task", "forget_classes",
                                  "confusion_step", "confusion_cell", "pair_cell", "pair_other",
                                  "pair_kind")),
}


def fresh_page_state(page, force=False):
    """Clear ``page``'s state when it belongs to another run than the one shown (or ``force``)."""
    marker, keys = PAGE_STATE[page]
    if force or st.session_state.get(marker) != st.session_state.get("run_path"):
        for key in keys:
            st.session_state.pop(key, None)
        st.session_state[marker] = st.session_state.get("run_path")


def _run():
    shared = open_run(st.session_state["run_path"])
    return shared.run


def _run_path(name):
    """The folder of run ``name`` (``demo:NAME`` for a bundled one), or None."""
    demo = name.startswith("demo:")
    for entry in available_runs():
        if entry["demo"] == demo and entry["name"] == name.removeprefix("demo:"):
            return str(entry["path"])
    return None


def _run_name(path):
    for entry in available_runs():
        if str(entry["path"]) == path:
            return f"demo:{entry['name']}" if entry["demo"] else entry["name"]
    return None


def restore(page):
    """Apply the URL's query parameters to this session when they are new (a link was opened or
    typed), not ones this app wrote itself; returns what was ignored, as ``name=value (why)``."""
    params = st.query_params.to_dict()
    if _key(params) in st.session_state.setdefault("links_written", []):
        return []
    _remember(params)
    for key in ("exercise_answer", "exercise_revealed"):       # a new exercise starts unanswered
        st.session_state.pop(key, None)
    ignored = []
    st.session_state["link_hidden"] = _hidden(params.get("hide", ""), page, ignored)
    st.session_state["link_question"] = (params["q"], params.get("reveal", "")) if params.get("q") else None
    if "run" in params:
        path = _run_path(params["run"])
        if path is None:
            ignored.append(f"run={params['run']} (no such run on this server)")
        else:
            st.session_state["run_path"] = path
    if "run_path" not in st.session_state:
        entries = available_runs()
        if not entries:
            return ignored + [f"{name}={value} (no run on this server)" for name, value in params.items()
                              if name != "run" and name not in EXERCISE]
        st.session_state["run_path"] = str(entries[0]["path"])
    try:
        run = _run()
    except UserError:           # the page says what is wrong with the run
        return ignored
    known = {p.name: p for p in PAGES.get(page, [])}
    if page in PAGE_STATE and known.keys() & params.keys():      # the link's view starts afresh
        fresh_page_state(page, force=True)
    for name, text in params.items():
        if name in ("run", *EXERCISE):
            continue
        if name not in known:
            ignored.append(f"{name}={text} (not a setting of this page)")
            continue
        try:
            st.session_state[known[name].key] = known[name].read(text, run)
        except ValueError as error:
            ignored.append(f"{name}={text} ({error})")
    return ignored


def _hidden(text, page, ignored):
    names = {n for n in text.split(",") if n}
    wrong = names - HIDEABLE.get(page, set()) - {"run"}
    if wrong:
        ignored.append(f"hide={','.join(sorted(wrong))} (this page has no such control)")
    return names - wrong


def hidden(name):
    """Whether the link this session opened hides control ``name``."""
    return name in st.session_state.get("link_hidden", ())


def current(page):
    """The query parameters of this page's view as it is now."""
    params = {}
    name = _run_name(st.session_state["run_path"]) if st.session_state.get("run_path") else None
    if name:            # (naming the run lists the run folder: once per rerun is enough)
        params["run"] = name
    for param in PAGES.get(page, []):
        text = param.write(st.session_state.get(param.key))
        if text is not None:
            params[param.name] = text
    hide = sorted(st.session_state.get("link_hidden", ()))
    if hide:
        params["hide"] = ",".join(hide)
    if st.session_state.get("link_question"):
        params["q"], params["reveal"] = st.session_state["link_question"]
        params = {k: v for k, v in params.items() if v != ""}
    return params


def publish(page):
    """Write this page's state into the URL; returns the link to this view."""
    params = current(page)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    _remember(params)
    return link_to(page, params)


def _key(params):
    return sorted(params.items())


def _remember(params):
    """Note ``params`` as this session's own: a rerun that still sees them (or earlier ones this
    session wrote: a rerun that interrupts a script may keep the URL as it was) applies nothing.
    Only a link opened from outside applies."""
    written = st.session_state.setdefault("links_written", [])
    if _key(params) not in written:
        written.append(_key(params))
        del written[:-20]


def link_to(page, params):
    """The address of ``page`` with ``params``: absolute when the browser's address is known."""
    path = "" if page == "tour" else page
    base = (st.context.url or "").split("?")[0].rstrip("/")
    if base.rsplit("/", 1)[-1] in PAGES or base.rsplit("/", 1)[-1] in HIDEABLE:
        base = base.rsplit("/", 1)[0]
    return f"{base}/{path}" + (f"?{urlencode(params, safe=':/,')}" if params else "")


def notice(ignored):
    """One sentence on what a link asked for that this server cannot show."""
    if ignored:
        st.info("Part of this link was ignored: " + "; ".join(ignored) + ".")


def answer_shown():
    """False while an exercise hides the page's answer and the student has not committed one."""
    return not hidden("answer") or st.session_state.get("exercise_revealed", False)


def exercise():
    """The question of an exercise link, with an answer to commit and the text to reveal after it."""
    question = st.session_state.get("link_question")
    if not question:
        return
    text, reveal = question
    box = st.container(border=True)
    box.markdown(f"**Exercise.** {text}")
    answer = box.text_input("Your answer", key="exercise_answer")
    revealed = st.session_state.get("exercise_revealed", False)
    if not revealed and box.button("Commit and reveal", disabled=not answer, key="exercise_reveal"):
        st.session_state["exercise_revealed"] = revealed = True
    if revealed:
        box.success(f"Your answer: {answer}." + (f" {reveal}" if reveal else " Now look below."))
