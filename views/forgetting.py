"""Forgetting: from a number in the accuracy matrices to the images, tasks and units behind it;
methods compared on the same split; explanation drift."""
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import drift_scores, forgetting_of
from rerelrp_core.forgetting import (
    KINDS,
    cell_trace,
    compare_runs,
    confused_images,
    image_rows,
    outcomes_table,
    recognition_confusion,
)
from ui import figures, links
from ui.forgetting_view import (
    csv_text,
    download_figure,
    image_grid,
    open_on_explore,
    what_moved_view,
    why_recognised,
)
from ui.glossary import TERMS
from ui.state import drift, final_outcomes, finished_run, outcomes, tasks_or_stop
from ui.summaries import same_split_runs, stored_summary


def clicked_cell(event, key):
    """The (row, column) of a newly clicked cell of chart ``key`` (None when nothing new): each
    chart keeps its selection, so only a change counts as a click."""
    points = [p.get("customdata") for p in (event or {}).get("selection", {}).get("points", [])
              if p.get("customdata") is not None]
    cell = tuple(int(v) for v in points[0]) if points else None
    if cell == st.session_state.get(f"{key}-seen"):
        return None
    st.session_state[f"{key}-seen"] = cell
    return cell


def worst_cell(history):
    """(kind, step, task) of the cell that lost most since its task was learnt (task-agnostic first)."""
    cells = [(row[t] - history[f"acc_{kind}"][t][t], kind, s, t) for kind in ("tag", "taw")
             for s, row in enumerate(history[f"acc_{kind}"]) for t in range(s)]
    return min(cells)[1:] if cells else ("tag", 0, 0)


st.title("Forgetting")
shared = finished_run()
run = shared.run
links.fresh_page_state("forgetting")     # another run: its cells and choices are not this run's
m = run.metrics
c1, c2, c3 = st.columns(3)
c1.metric("TAw forgetting", f"{m['forgetting_taw']:.2f}", help=f"{TERMS['forgetting']} {TERMS['TAw']}")
c2.metric("TAg forgetting", f"{m['forgetting_tag']:.2f}", help=f"{TERMS['forgetting']} {TERMS['TAg']}")
if "task_recognition_acc" in m:
    c3.metric("Task recognition", f"{m['task_recognition_acc']:.1f}%",
              help="How often the recognised task is the true one (mean over tasks).")
tasks = tasks_or_stop(run)
try:
    traced, how = outcomes(shared, tasks)
except UserError as error:
    traced, how = None, str(error)

def matrices_to_click(traced):
    """Both accuracy matrices; a click on a cell (when outcomes are there) makes it the traced one."""
    matrices = {"taw": figures.traced_matrix(m["acc_taw"], "Task-aware accuracy (%)"),
                "tag": figures.traced_matrix(m["acc_tag"], "Task-agnostic accuracy (%)")}
    for (kind, fig), column in zip(matrices.items(), st.columns(2)):
        event = column.plotly_chart(fig, on_select="rerun", selection_mode="points", key=f"matrix-{kind}",
                                    width="stretch")
        cell = clicked_cell(event, f"matrix-{kind}")
        if cell is not None and traced is not None:
            st.session_state.update({"forget_kind": kind, "forget_step": cell[0], "forget_task": cell[1]})
        download_figure(column, fig, f"{kind}-matrix", f"download-matrix-{kind}")


def chosen_cell():
    """The traced cell's (kind, step, task) and the order of its images, from the selectors (the
    worst cell when a run is first shown)."""
    if not {"forget_kind", "forget_step", "forget_task"} <= st.session_state.keys():
        kind, step, task = worst_cell(run.history)
        for key, value in (("forget_kind", kind), ("forget_step", step), ("forget_task", task)):
            st.session_state.setdefault(key, value)
    if links.hidden("cell"):           # an exercise fixes the cell
        state = st.session_state
        state["forget_task"] = min(state["forget_task"], state["forget_step"])
        return state["forget_kind"], state["forget_step"], state["forget_task"], "most confidence lost"
    c1, c2, c3, c4 = st.columns(4)
    kind = c1.selectbox("Matrix", list(KINDS), format_func=KINDS.get, key="forget_kind")
    step = c2.selectbox("After task", range(run.tasks_done), key="forget_step")
    st.session_state["forget_task"] = min(st.session_state["forget_task"], step)
    task = c3.selectbox("Task", range(step + 1), key="forget_task",
                        format_func=lambda t: f"task {t}: {', '.join(tasks[t].class_names)}")
    order = c4.selectbox("Order", ["most confidence lost", "test index"], key="forget_order")
    return kind, step, task, order


def trace_a_cell(traced):
    """The traced cell's lost and recovered images, and why one of them was lost."""
    kind, step, task, order = chosen_cell()
    trace = cell_trace(run, traced, tasks, step, task, kind)
    lost, recovered = trace["lost"], trace["recovered"]
    n = trace["images"]
    st.markdown(f"**Task {task}, {KINDS[kind]}:** {trace['then']:.2f} % right after task {task} → "
                f"{trace['now']:.2f} % after task {step}: **{len(lost)} lost**, {len(recovered)} recovered "
                f"of {n:,} test images (({len(recovered)} − {len(lost)}) / {n:,} = {trace['change']:+.2f} "
                "points).")
    classes = st.multiselect("Only these true classes", list(tasks[task].class_names), key="forget_classes")
    st.download_button("Lost and recovered images as CSV", csv_text(outcomes_table(run, trace)),
                       file_name=f"{run.config.method}-task{task}-after{step}-{kind}.csv", mime="text/csv",
                       on_click="ignore", key="download-lost")

    def kept(rows):
        rows = [{"task": task, **r} for r in rows if not classes or r["class"] in classes]
        return sorted(rows, key=lambda r: r["index"]) if order == "test index" else rows

    def caption(row):
        label = f"#{row['index']} {row['class']}: {row['then']} → {row['now']}"
        return label + (f" (task {row['task now']})" if row["task now"] != row["task then"] else "")

    lost_tab, recovered_tab = st.tabs([f"Lost ({len(lost)})", f"Recovered ({len(recovered)})"])
    with lost_tab:
        picked = image_grid(tasks, kept(lost), "lost", caption)
    with recovered_tab:
        image_grid(tasks, kept(recovered), "recovered", caption)
    if picked is not None:
        why_lost(picked, task, step)


def why_lost(picked, task, step):
    """One lost image: what it was taken for then and now, why that task, and what moved."""
    st.markdown(f"#### Why test image #{picked['index']} of task {task} was lost")
    x = tasks[task].x_test[picked["index"]:picked["index"] + 1]
    left, right = st.columns([1, 3])
    left.image(figures.image_png(x[0].numpy(), scale=6), caption=f"true class {picked['class']}")
    right.markdown(f"- right after task {task}: **{picked['then']}**, true class at p = "
                   f"{picked['p then']:.2f}, recognised as task {picked['task then']}\n"
                   f"- after task {step}: **{picked['now']}**, p = {picked['p now']:.2f}, recognised as task "
                   f"{picked['task now']}")
    if run.learner.can_recognise() and picked["task now"] != task:
        right.info(f"Task-aware forgetting is 0 here: task {task}'s subnetwork still answers as it did. The "
                   f"image was lost because it was recognised as task {picked['task now']}.")
    open_on_explore(right, task, picked["index"], "explore-lost")
    why_recognised(shared, run, x, step)
    what_moved_view(shared, run, x, task, tasks[task].offset + int(tasks[task].y_test[picked["index"]]), step)


def task_confusion(traced):
    """True task x recognised task after a chosen step, clickable, with the clicked cell's images."""
    st.caption("Rows: the true task of each test image; columns: the task it was recognised as (for a method "
               "without a recogniser, the task of the class it predicted). Every off-diagonal image is a "
               "task-agnostic mistake; the share says how much of the step's mistakes it explains. Click a "
               "cell for its images.")
    c1, _ = st.columns([1, 3])
    st.session_state.setdefault("confusion_step", run.tasks_done - 1)
    step = c1.selectbox("After task", range(run.tasks_done), key="confusion_step")
    confusion = recognition_confusion(traced, tasks, step)
    fig = figures.recognition_confusion(confusion, step)
    cell = clicked_cell(st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="confusion",
                                        width="stretch"), "confusion")
    if cell is not None:
        st.session_state["confusion_cell"] = cell
    within = ", ".join(f"task {t} {share:.0%}" for t, share in enumerate(confusion["within_shares"]) if share)
    st.caption(f"{confusion['mistakes']:,} task-agnostic mistakes after task {step}"
               + (f"; a wrong class within the right task: {within}." if within else "."))
    download_figure(st, fig, f"task-confusion-after{step}", "download-confusion")
    true_task, as_task = st.session_state.get("confusion_cell") or (None, None)
    if true_task is None or max(true_task, as_task) > step:
        return
    indices = confused_images(traced, step, true_task, as_task)
    st.markdown(f"**Task {true_task}'s images recognised as task {as_task}** after task {step}: "
                f"{len(indices)}")
    chosen = image_grid(tasks, image_rows(run, traced, tasks, step, true_task, indices), "confused",
                        lambda r: f"#{r['index']} {r['class']} → {r['now']}")
    if chosen is not None:
        x = tasks[true_task].x_test[chosen["index"]:chosen["index"] + 1]
        c1, c2 = st.columns([1, 3])
        c1.image(figures.image_png(x[0].numpy(), scale=6), caption=f"#{chosen['index']}, {chosen['class']}")
        open_on_explore(c2, true_task, chosen["index"], "explore-confused")
        with c2:
            why_recognised(shared, run, x, step)


def two_runs(comparable):
    """Which test images this run and another on the same split get right after their last task."""
    others = {name: other for name, other in comparable[1:] if other.run.tasks_done == run.tasks_done}
    if not others:
        st.caption("Train another method on the same data set and tasks to see which images one keeps and "
                   "the other loses.")
        return
    c1, c2 = st.columns(2)
    other_name = c1.selectbox("Compare with", list(others), key="pair_other")
    kind = c2.selectbox("Matrix", list(KINDS), format_func=KINDS.get, index=1, key="pair_kind")
    try:
        pair = compare_runs(final_outcomes(shared, tasks), final_outcomes(others[other_name], tasks), tasks,
                            kind)
    except UserError as error:
        st.info(f"{other_name}: {error}")
        return
    fig = figures.run_pair(pair["counts"], "this run", other_name.split(" ")[0])
    cell = clicked_cell(st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="pair",
                                        width="stretch"), "pair")
    if cell is not None:
        st.session_state["pair_cell"] = cell
    download_figure(st, fig, "two-runs", "download-pair")
    a, b = st.session_state.get("pair_cell") or (1, 0)
    pairs = pair["images"][f"{a},{b}"]
    st.markdown(f"**{'Right' if a else 'Wrong'} in this run, {'right' if b else 'wrong'} in "
                f"{other_name}:** {len(pairs)} images")
    rows = [{"task": t, "index": i, "class": tasks[t].class_names[int(tasks[t].y_test[i])]} for t, i in pairs]
    image_grid(tasks, rows, "pair", lambda r: f"task {r['task']} #{r['index']} {r['class']}")


st.subheader("Where the accuracy went")
st.caption("Click a cell: the test images of that task it lost since the task was learnt (right then, wrong "
           "now) and those it won back." + (f" {how}" if how else ""))
matrices_to_click(traced)
if not links.answer_shown():           # an exercise: what follows is the answer
    st.stop()
comparable = same_split_runs(run)
if traced is not None:
    trace_a_cell(traced)
    st.subheader("Task confusion, step by step")
    task_confusion(traced)
st.subheader("Two runs on the same split")
two_runs(comparable)

# -- 4. methods on the same split --------------------------------------------------------------------------
st.subheader("Methods on the same split")
series_taw = {name: other.run.metrics["avg_acc_taw"] for name, other in comparable}
series_tag = {name: other.run.metrics["avg_acc_tag"] for name, other in comparable}
costs = [stored_summary(name, other.run.metrics) for name, other in comparable]
left, right = st.columns(2)
left.plotly_chart(figures.curves(series_taw, "Average task-aware accuracy"), width="stretch")
right.plotly_chart(figures.curves(series_tag, "Average task-agnostic accuracy"), width="stretch")
if len(series_taw) < 2:
    st.caption("Train fine-tuning or joint on the same data set and number of tasks to compare methods here.")
st.markdown("**What each method keeps to get there** (beyond the shared network, after its last task)")
columns = dict.fromkeys(k for row in costs for k in row)     # a kind one method lacks is 0 for it
st.plotly_chart(figures.memory_card(costs), width="stretch")
st.dataframe([{k: row.get(k, 0) for k in columns} for row in costs], hide_index=True, width="stretch")
st.caption("ReReLRP keeps masks, each task's relevance ranking (one number per unit) and, to recognise "
           "tasks, per-class statistics (class Gaussians) or "
           "relevance values (forest runs), never an image; EWC a Fisher value and an anchor weight per "
           "parameter; iCaRL and replay their 2,000 stored images and joint training every image (one "
           "byte per pixel). kB = 1000 bytes.")

# -- 5. explanation drift ----------------------------------------------------------------------------------
st.subheader("Forgetting side by side")
st.caption("One test image's LRP heatmap after each task, through what task-aware prediction of its task "
           "uses, for two runs on the same split. ReReLRP's frozen subnetwork keeps it unchanged; without "
           "protection it drifts as the task is forgotten. " + TERMS["drift"])
with_snapshots = {name: other for name, other in comparable if other.run.snapshots}
if not run.snapshots or len(with_snapshots) < 2:
    st.info("Side by side needs two runs on this split that kept per-task snapshots (runs trained on the "
            "Train page keep them; the demo runs of ReReLRP, fine-tuning and joint training do).")
    st.stop()
names = list(with_snapshots)
mine = comparable[0][0]                         # same_split_runs lists the run itself first
c1, c2, c3, c4 = st.columns(4)
first = c1.selectbox("Run", names, index=names.index(mine), key="drift_first")
second = c2.selectbox("Beside", [n for n in names if n != first],
                      index=next((i for i, n in enumerate(n for n in names if n != first)
                                  if n.startswith("finetune")), 0), key="drift_second")
task_index = c3.selectbox("Task of the image", range(run.tasks_done), format_func=lambda t: f"task {t}")
drift_task = tasks[task_index]
sample = c4.number_input("Test sample", 0, len(drift_task.x_test) - 1, 0, key="drift_sample")
x, row = drift_task.x_test[sample:sample + 1], drift_task.offset + int(drift_task.y_test[sample])
series = {}
with st.spinner("Recomputing the heatmap after every task…"):
    for name in (first, second):
        other = with_snapshots[name]
        if task_index >= other.run.tasks_done:
            st.caption(f"{name} has not learnt task {task_index}.")
            continue
        strip = drift(other, x, task_index, row)
        scores, lost = drift_scores(strip), forgetting_of(other.run, task_index)
        series[name] = (scores, lost, [s for s, _ in strip])
        titles = [f"after task {s}<br>drift {d:.2f}" for (s, _), d in zip(strip, scores)]
        st.plotly_chart(figures.heatmaps([h for _, h in strip], titles, x[0].numpy()), width="stretch")
        st.caption(f"{name}: task {task_index} lost "
                   + ", ".join(f"{a:.1f}" for a in lost[1:]) + " points after the later tasks"
                   if len(lost) > 1 else f"{name}: task {task_index} is its last task.")
st.plotly_chart(figures.drift_against_loss(series), width="stretch")
