"""Masking: each task's accuracy with and without its mask, ablation of pathways, capacity."""
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import (
    ablation_report,
    free_by_stage,
    masking_report,
    ownership_shares,
    reuse_matrix,
)
from rerelrp_core.pruning import level_for
from ui import figures, links
from ui.glossary import TERMS
from ui.state import finished_run, pruning_curve, tasks_or_stop

st.title("Masking and ablation")
shared = finished_run()
run = shared.run
tasks = tasks_or_stop(run)
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
if links.hidden("ablation"):           # an exercise fixes what is switched off
    owner, layer = st.session_state.get("ablate_owner"), st.session_state.get("ablate_layer")
    st.markdown("Switched off: " + " and ".join(
        ([f"every unit task {owner} froze"] if owner is not None else [])
        + ([f"every unit of {layer}"] if layer is not None else [])) or "nothing")
else:
    owner = c1.selectbox("Units owned by", [None] + list(range(run.tasks_done)), key="ablate_owner",
                         format_func=lambda t: "— nobody —" if t is None else f"task {t}",
                         help="Every unit this task froze is switched off in every subnetwork.")
    layer = c2.selectbox("Whole layer", [None] + run.layer_names, key="ablate_layer",
                         format_func=lambda n: "— none —" if n is None else n,
                         help="Every unit of this layer is switched off.")
if not links.answer_shown():           # an exercise: what follows is the answer
    st.stop()
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

st.subheader("Capacity and reuse")
# a deep network's 20-300 unit layers, one bar or line each, are grouped by stage unless asked otherwise
by_stage = len(run.layer_names) > 12 and not st.toggle(
    "One bar per layer", False, help=f"This network has {len(run.layer_names)} unit layers; by default they "
                                     "are grouped by stage (the module path up to its first number).")
per = "stage" if by_stage else "layer"
left, right = st.columns(2)
left.plotly_chart(figures.stacked_shares(ownership_shares(run, by_stage),
                                         f"Units owned per task and free, per {per}", "share of units"),
                  width="stretch")
reuse = reuse_matrix(run)
if reuse is None:
    right.caption("This method has no subnetworks, so nothing is frozen or reused.")
else:
    right.plotly_chart(figures.reuse_matrix(reuse), width="stretch")
    right.caption("Column j: where the units of task j's subnetwork come from. Off the diagonal, what "
                  "a later task builds on (frozen earlier, reused read-only); on it, what the task froze "
                  "itself.")
if run.metrics.get("capacity"):
    steps = free_by_stage(run, run.metrics["capacity"]) if by_stage else run.metrics["capacity"]
    free = {layer: [100 * step[layer] for step in steps] for layer in steps[0]}
    st.plotly_chart(figures.curves(free, f"Free units per {per} after each task", "free units (%)"),
                    width="stretch")

st.subheader("The stability–plasticity trade-off, live")
if run.learner.ownership is None:
    st.caption("This method does not prune: every task uses the whole network.")
    st.stop()
st.caption("Move acc_drop to see how many units a finished task would keep and what validation accuracy "
           "its subnetwork would have: the curve the pruning search walked, along the task's stored "
           "relevance ranking, on its validation images. Fewer kept units leave more room for later "
           "tasks (plasticity); more keep the task's accuracy (stability). " + TERMS["acc_drop"])
c1, c2 = st.columns([1, 3])
task_index = c1.selectbox("Task", range(run.tasks_done), format_func=lambda t: f"task {t}", key="curve_task")
st.session_state.setdefault("curve_acc_drop", float(run.config.acc_drop))
if links.hidden("acc_drop"):
    acc_drop = st.session_state["curve_acc_drop"]
    c1.markdown(f"acc_drop: **{acc_drop:g}** points")
else:
    acc_drop = c1.slider("acc_drop (points)", 0.0, 20.0, step=0.25, key="curve_acc_drop",
                         help=TERMS["acc_drop"])
try:
    with st.spinner("Walking the pruning curve once…"):
        curve = pruning_curve(shared, tasks[task_index])
except UserError as error:
    st.info(str(error))
    st.stop()
pick, total = level_for(curve, acc_drop), curve["kept"][0]
c1.metric("Units it would keep", f"{curve['kept'][pick]} of {total}",
          delta=f"{curve['kept'][pick] - curve['kept_units']:+d} vs what it kept",
          delta_color="off")
c1.metric("Validation accuracy", f"{curve['accuracy'][pick]:.1f}%",
          delta=f"{curve['accuracy'][pick] - curve['reference']:+.1f} vs unpruned", delta_color="off")
c2.plotly_chart(figures.pruning_curve(curve, pick, acc_drop), width="stretch")
note = (f"The star is where the acc_drop search stopped; the claim cap then pruned {curve['capped']} more of "
        f"the task's new units, so it kept {curve['kept_units']}. " if curve["capped"] else "")
c2.caption(note + f"Where a level keeps units task {task_index} did not freeze, later tasks have trained "
           "them since, so those accuracies are today's, not what the search saw"
           + ("; from the star on (only frozen units) they are exact." if not curve["capped"] else "."))
