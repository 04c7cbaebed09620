"""Masking: each task's accuracy with and without its mask, ablation of pathways, capacity."""
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import ablation_report, masking_report, ownership_shares
from ui import figures
from ui.state import current_run, run_tasks

st.title("Masking and ablation")
shared = current_run()
run = shared.run if shared else None
if run is None or not run.tasks_done:
    st.info("Pick a run with at least one finished task in the sidebar.")
    st.stop()
tasks = run_tasks(run)
labels = [f"task {t.index}" for t in run.tasks[:run.tasks_done]]

st.subheader("Before and after masking")
st.caption("Unmasked: the whole final network with the task's head rows. Subnetwork: the task's own mask "
           "(pruned units output 0) — what task-aware prediction uses.")
with st.spinner("Evaluating every task…"), shared.borrow() as replica:
    rows = masking_report(replica, tasks)
st.plotly_chart(figures.grouped_bars(labels, {"unmasked network": [r["unmasked"] for r in rows],
                                              "task's subnetwork": [r["subnetwork"] for r in rows]},
                                     "Test accuracy per task (%)"), width="stretch")
st.dataframe([{**row, "classes": ", ".join(row["classes"])} for row in rows], hide_index=True)

st.subheader("Ablation: switch a pathway off")
c1, c2 = st.columns(2)
owner = c1.selectbox("Units owned by", [None] + list(range(run.tasks_done)),
                     format_func=lambda t: "— nobody —" if t is None else f"task {t}",
                     help="Every unit this task froze is switched off in every subnetwork.")
layer = c2.selectbox("Whole layer", [None] + run.layer_names,
                     format_func=lambda n: "— none —" if n is None else n,
                     help="Every unit of this layer is switched off.")
if owner is None and layer is None:
    st.caption("Choose a task's pathway or a layer to switch off.")
else:
    try:
        with st.spinner("Evaluating with the units switched off…"), shared.borrow() as replica:
            ablated = ablation_report(replica, tasks, owner, layer)
        st.plotly_chart(figures.grouped_bars(labels, {"before": [r["before"] for r in ablated],
                                                      "after ablation": [r["after"] for r in ablated]},
                                             "Task-aware test accuracy (%)"), width="stretch")
    except UserError as error:
        st.error(str(error))

st.subheader("Capacity")
st.plotly_chart(figures.stacked_shares(ownership_shares(run), "Units owned per task and free, per layer",
                                       "share of units"), width="stretch")
if run.metrics.get("capacity"):
    steps = run.metrics["capacity"]
    st.plotly_chart(figures.curves({layer: [100 * step[layer] for step in steps] for layer in steps[0]},
                                   "Free units per layer after each task", "free units (%)"), width="stretch")
