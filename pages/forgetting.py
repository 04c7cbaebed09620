"""Forgetting: accuracy matrices, average-accuracy curves across methods, explanation drift."""
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import explanation_drift
from ui import figures
from ui.state import available_runs, current_run, open_run, run_tasks


def stored_summary(name, metrics):
    """One row of the cost table: final accuracies and the bytes kept, in kB, by kind."""
    parts = metrics["stored_parts_per_task"]
    kinds = {kind: sum(p.get(kind, 0) for p in parts) / 1e3
             for kind in dict.fromkeys(k for p in parts for k in p)}
    return {"run": name, "final TAg (%)": round(metrics["avg_acc_tag"][-1], 2),
            "final TAw (%)": round(metrics["avg_acc_taw"][-1], 2),
            "kept (kB)": round(sum(metrics["stored_bytes_per_task"]) / 1e3, 1),
            **{f"{kind} (kB)": round(value, 1) for kind, value in kinds.items()}}


st.title("Forgetting")
shared = current_run()
run = shared.run if shared else None
if run is None or not run.tasks_done:
    st.info("Pick a run with at least one finished task in the sidebar.")
    st.stop()
m = run.metrics
c1, c2, c3 = st.columns(3)
c1.metric("TAw forgetting", f"{m['forgetting_taw']:.2f}",
          help="Best earlier accuracy minus final accuracy, averaged over old tasks (task label given).")
c2.metric("TAg forgetting", f"{m['forgetting_tag']:.2f}", help="The same without the task label.")
if "task_recognition_acc" in m:
    c3.metric("Task recognition", f"{m['task_recognition_acc']:.1f}%",
              help="How often the recognised task is the true one (mean over tasks).")
left, right = st.columns(2)
left.plotly_chart(figures.accuracy_matrix(m["acc_taw"], "Task-aware accuracy (%)"), width="stretch")
right.plotly_chart(figures.accuracy_matrix(m["acc_tag"], "Task-agnostic accuracy (%)"), width="stretch")

st.subheader("Methods on the same split")
series_taw, series_tag, costs = {}, {}, []
for entry in available_runs():
    try:
        other = open_run(entry["path"]).run
    except UserError:
        continue
    if other.dataset == run.dataset and vars(other.split) == vars(run.split) and other.tasks_done:
        name = f"{other.config.method} ({'demo ' if entry['demo'] else ''}{entry['name']})"
        series_taw[name] = other.metrics["avg_acc_taw"]
        series_tag[name] = other.metrics["avg_acc_tag"]
        costs.append(stored_summary(name, other.metrics))
left, right = st.columns(2)
left.plotly_chart(figures.curves(series_taw, "Average task-aware accuracy"), width="stretch")
right.plotly_chart(figures.curves(series_tag, "Average task-agnostic accuracy"), width="stretch")
if len(series_taw) < 2:
    st.caption("Train fine-tuning or joint on the same data set and number of tasks to compare methods here.")
st.markdown("**What each method keeps to get there** (beyond the shared network, after its last task)")
columns = dict.fromkeys(k for row in costs for k in row)     # a kind one method lacks is 0 for it
st.dataframe([{k: row.get(k, 0) for k in columns} for row in costs], hide_index=True, width="stretch")
st.caption("ReReLRP keeps masks and the relevance values its task recognisers read, never an image; EWC a "
           "Fisher value and an anchor weight per parameter; iCaRL its exemplar images and joint training "
           "every image (one byte per pixel). kB = 1000 bytes.")

st.subheader("Explanation drift")
st.caption("One test image's LRP heatmap after each task, through what task-aware prediction of its task "
           "uses. ReReLRP's frozen subnetwork keeps it unchanged; without protection it drifts.")
if not run.snapshots:
    st.info("This run kept no per-task snapshots (runs trained on the Train page keep them).")
    st.stop()
tasks = run_tasks(run)
c1, c2 = st.columns(2)
task_index = c1.selectbox("Task of the image", range(run.tasks_done), format_func=lambda t: f"task {t}")
task = tasks[task_index]
sample = c2.number_input("Test sample", 0, len(task.x_test) - 1, 0, key="drift_sample")
row = task.offset + int(task.y_test[sample])
with st.spinner("Recomputing the heatmap after every task…"):
    strip = explanation_drift(run, task.x_test[sample:sample + 1], task_index, row)
st.plotly_chart(figures.heatmaps([h for _, h in strip], [f"after task {s}" for s, _ in strip]),
                width="stretch")
