"""Tour: forgetting and ReReLRP in four steps on the bundled demo runs, one figure per step."""
import numpy as np
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import drift_scores, forgetting_of, ownership_shares
from ui import figures, links
from ui.claims import forgetting_words, images_kept, memory_words, protection_words
from ui.glossary import TERMS, glossary_markdown
from ui.pathway_view import class_probabilities, graph_view
from ui.state import DEMO_RUNS, drift, explanation, open_run, pathway, run_tasks
from ui.summaries import stored_summary

# the image the story follows: the first test image of task 1 (fine-tuning forgets task 1 most on the
# demo split, and its ReReLRP subnetwork reuses units task 0 froze)
IMAGE_TASK, IMAGE_INDEX = 1, 0


def demo(name):
    """The SharedRun of bundled demo run ``name``."""
    return open_run(DEMO_RUNS / name)


def story(name):
    """Demo run ``name`` (SharedRun and Run), and the task and image the story follows in it."""
    shared = demo(name)
    task = run_tasks(shared.run)[IMAGE_TASK]
    return shared, shared.run, task, task.x_test[IMAGE_INDEX:IMAGE_INDEX + 1]


def step_forgetting():
    shared, run, task, x = story("finetune")
    row = task.offset + int(task.y_test[IMAGE_INDEX])
    st.markdown("Plain **fine-tuning** trains one network on five tasks in turn (two digits each). Each new "
                "task overwrites what the earlier ones relied on: read a column of the matrix downwards to "
                f"watch a task's accuracy fall. {forgetting_words(run.metrics)} The explanation of one test "
                "image drifts as its task is forgotten (right).")
    left, right = st.columns([2, 3])
    matrix = figures.accuracy_matrix(run.metrics["acc_tag"], "Fine-tuning: task-agnostic accuracy (%)")
    left.plotly_chart(matrix, width="stretch")
    strip = drift(shared, x, task.index, row)
    scores, lost = drift_scores(strip), forgetting_of(run, task.index)
    right.plotly_chart(figures.heatmaps([h for _, h in strip],
                                        [f"after task {s}<br>drift {d:.2f}<br>−{a:.1f} points"
                                         for (s, _), d, a in zip(strip, scores, lost)]), width="stretch")
    right.caption(f"A '{task.class_names[int(task.y_test[IMAGE_INDEX])]}' of task {task.index}: its LRP "
                  "heatmap after every task (red: evidence for its class), and the task-aware accuracy "
                  f"points task {task.index} has lost by then. " + TERMS["drift"])
    st.page_link("views/forgetting.py", label="Go deeper: Forgetting (any two runs side by side)",
                 icon=":material/trending_down:")


def step_pathways():
    shared, run, task, x = story("rerelrp")
    st.markdown("**ReReLRP** runs Layer-wise Relevance Propagation after each task to find the units the "
                "task relies on. It keeps those in the task's *subnetwork*, prunes the rest from it (within "
                "`acc_drop` points of validation accuracy) and **freezes** what it kept: later tasks may "
                f"read those units but never change them, {protection_words(run.metrics)}.")
    path = pathway(shared, x, task.index)
    graph = figures.pathway_graph(graph_view(run, path, x, class_probabilities(path)))
    st.plotly_chart(graph, width="content", config={"displayModeBar": False})
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.stacked_shares(ownership_shares(run), "Capacity meter: units each task froze",
                                             "share of units"), width="stretch")
    right.markdown(f"The graph follows the same image through task {task.index}'s subnetwork: each square "
                   "is a unit's own heatmap, framed in the colour of the task that froze it; edges are "
                   "the relevance flowing between them. The meter shows how much of each layer every task "
                   "froze and what is still free for the next one.")
    right.page_link("views/explore.py", label="Go deeper: Explore (click any unit)",
                    icon=":material/search:")
    right.page_link("views/masking.py", label="Capacity, reuse and ablation: Masking",
                    icon=":material/layers:")


def step_recognition():
    shared, run, task, x = story("rerelrp")
    result = explanation(shared, x)
    space = getattr(run.learner.recogniser, "space", None)      # class Gaussians; the forests have none
    how = (f"which class the input lies nearest to in {space.description}; each class is summarised by "
           "means and covariances, never by images" if space else
           "random forests that read the input's relevance in every subnetwork")
    st.markdown("Task-aware prediction needs the task label. Without it, ReReLRP must first **recognise "
                f"the task**, then let that task's subnetwork pick the class. Here it asks {how}.")
    left, right = st.columns([3, 2])
    labels = [f"task {t}" for t in range(run.tasks_done)]
    left.plotly_chart(figures.probabilities(labels, result["task_probs"], "Which task is this image from?",
                                            highlight=result["task"]), width="stretch")
    right.image(figures.image_png(x[0].numpy(), scale=4), caption=f"a test image of task {task.index}")
    right.metric("Recognised task", f"task {result['task']}", help=TERMS["TAg"])
    right.metric("Predicted class", result["class_name"])
    right.page_link("views/explore.py", label="Go deeper: Explore (why this task?)", icon=":material/search:")


def step_memory():
    names = [n for n in ("rerelrp", "replay", "icarl", "joint", "finetune") if (DEMO_RUNS / n).exists()]
    rows = [stored_summary(n, demo(n).run.metrics) for n in names]
    pixels = int(np.prod(demo("rerelrp").run.input_shape))
    kept = {n: images_kept(demo(n).run.metrics, pixels) for n in names}
    st.markdown("What does each method keep, beyond the network, to avoid forgetting? "
                f"{memory_words(kept)} ReReLRP keeps masks, per-class statistics and one relevance number "
                f"per unit and task: {kept.get('rerelrp', 0):,} images.")
    by_name = dict(zip(names, rows))
    if "replay" in by_name and "rerelrp" in by_name:      # the honest comparison, from the runs themselves
        ours, replay = by_name["rerelrp"], by_name["replay"]
        st.markdown(f"On this split replay reaches {replay['final TAg (%)']:.1f} % without the task label, "
                    f"keeping {replay['kept (kB)']:,.0f} kB; ReReLRP {ours['final TAg (%)']:.1f} %, keeping "
                    f"{ours['kept (kB)']:,.0f} kB and no image: replay needs the old images to be kept "
                    "(not always allowed: privacy, licences), ReReLRP does not.")
    left, right = st.columns(2)
    left.plotly_chart(figures.memory_card(rows), width="stretch")
    right.plotly_chart(figures.grouped_bars([r["run"] for r in rows],
                                            {"TAw": [r["final TAw (%)"] for r in rows],
                                             "TAg": [r["final TAg (%)"] for r in rows]},
                                            "Final average accuracy after 5 tasks (%)"), width="stretch")
    right.caption(f"{TERMS['TAw']} {TERMS['TAg']}")
    st.page_link("views/train.py", label="Your turn: train a sequence of your own",
                 icon=":material/model_training:")


STEPS = [("A network that learns tasks in turn forgets", step_forgetting),
         ("ReReLRP finds each task's critical units, and freezes them", step_pathways),
         ("Without the task label, it recognises the task", step_recognition),
         ("What it keeps instead of images", step_memory)]


def go(step):
    st.session_state["tour_step"] = step


st.title("A two-minute tour")
step = min(st.session_state.get("tour_step", 0), len(STEPS) - 1)
title, draw = STEPS[step]
st.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)}: {title}")
st.subheader(title)
try:
    draw()
except UserError as error:     # a demo run deleted or damaged: say which, keep the tour alive
    st.error(f"This step needs the bundled demo runs in {DEMO_RUNS}: {error}")
if not links.hidden("nav"):
    back, forward, _ = st.columns([1, 1, 4])
    back.button("← Back", disabled=step == 0, on_click=go, args=(step - 1,), key="tour_back")
    forward.button("Next →", disabled=step == len(STEPS) - 1, on_click=go, args=(step + 1,), type="primary",
                   key="tour_next")
with st.expander("The words used here"):
    st.markdown(glossary_markdown())
