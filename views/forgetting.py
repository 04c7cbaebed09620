"""Forgetting: accuracy matrices, average-accuracy curves across methods, explanation drift."""
import streamlit as st

from rerelrp_core.explain import drift_scores, forgetting_of
from ui import figures
from ui.glossary import TERMS
from ui.state import drift, finished_run, tasks_or_stop
from ui.summaries import same_split_runs, stored_summary

st.title("Forgetting")
shared = finished_run()
run = shared.run
m = run.metrics
c1, c2, c3 = st.columns(3)
c1.metric("TAw forgetting", f"{m['forgetting_taw']:.2f}", help=f"{TERMS['forgetting']} {TERMS['TAw']}")
c2.metric("TAg forgetting", f"{m['forgetting_tag']:.2f}", help=f"{TERMS['forgetting']} {TERMS['TAg']}")
if "task_recognition_acc" in m:
    c3.metric("Task recognition", f"{m['task_recognition_acc']:.1f}%",
              help="How often the recognised task is the true one (mean over tasks).")
left, right = st.columns(2)
left.plotly_chart(figures.accuracy_matrix(m["acc_taw"], "Task-aware accuracy (%)"), width="stretch")
right.plotly_chart(figures.accuracy_matrix(m["acc_tag"], "Task-agnostic accuracy (%)"), width="stretch")

st.subheader("Methods on the same split")
comparable = same_split_runs(run)
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
tasks = tasks_or_stop(run)
task_index = c3.selectbox("Task of the image", range(run.tasks_done), format_func=lambda t: f"task {t}")
task = tasks[task_index]
sample = c4.number_input("Test sample", 0, len(task.x_test) - 1, 0, key="drift_sample")
x, row = task.x_test[sample:sample + 1], task.offset + int(task.y_test[sample])
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
