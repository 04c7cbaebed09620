"""Explore: one image through every task's subnetwork — prediction, recognised task, heatmaps, pathways."""
import numpy as np
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import explain_image, pathway_share, prepare_upload, relevance_flows, unit_owners
from ui import figures
from ui.state import current_run, run_tasks

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]

st.title("Explore an image")
shared = current_run()
run = shared.run if shared else None
if run is None:
    st.info("Pick a run in the sidebar (the bundled demo run is there from the start).")
    st.stop()
if not run.tasks_done:
    st.warning("This run has no finished task yet.")
    st.stop()

source = st.radio("Image", ["Test sample", "Upload"], horizontal=True,
                  help="A test image of the run's data set, or any image of yours (it is resized and, when its "
                       "background is bright, inverted to look like the training data).")
x, caption = None, ""
if source == "Upload":
    upload = st.file_uploader("Upload an image", type=UPLOAD_TYPES, key="upload",
                              help="PNG, JPEG, BMP, GIF, WebP or TIFF; colour or grey; any size.")
    invert = st.selectbox("Invert colours", ["auto", "no", "yes"],
                          help="auto inverts images whose border is bright (dark drawing on white paper).")
    if upload is not None:
        try:
            x = prepare_upload(run, upload.getvalue(), {"auto": "auto", "no": False, "yes": True}[invert])
            caption = upload.name
        except UserError as error:
            st.error(f"{upload.name}: {error}")
else:
    tasks = run_tasks(run)[:run.tasks_done]
    task_labels = [f"task {t.index}: {', '.join(t.class_names)}" for t in tasks]
    col1, col2 = st.columns(2)
    task_index = col1.selectbox("Task", range(len(tasks)), format_func=lambda i: task_labels[i])
    task = tasks[task_index]
    sample = col2.number_input("Test sample", 0, len(task.x_test) - 1, 0,
                               help="Index into this task's test images.")
    x = task.x_test[sample:sample + 1]
    caption = f"test image {sample} of task {task_index} (true class: {task.class_names[int(task.y_test[sample])]})"

if x is None:
    st.stop()

with st.spinner("Running every subnetwork with LRP…"), shared.borrow() as replica:
    result = explain_image(replica, x)
    owners = unit_owners(run)
    layers = run.layer_names

left, right = st.columns([1, 2])
left.image(figures.image(x[0].numpy(), scale=max(1, 224 // x.shape[-1])), caption=f"What the model sees: {caption}")
right.metric("Predicted class", result["class_name"],
             help="Task-agnostic prediction: the recognised task's subnetwork picks the class.")
right.metric("Recognised task", f"task {result['task']}",
             help="The task whose recogniser chain gives this input the highest probability.")
if result["task_probs"] is not None:
    right.plotly_chart(figures.probabilities([f"task {t}" for t in range(run.tasks_done)], result["task_probs"],
                                             "Chain probability of each task", highlight=result["task"]),
                       width="stretch")

st.subheader("LRP heatmap through each task's subnetwork")
st.caption("Red pixels speak for the subnetwork's own predicted class, blue against it.")
maps = [s["heatmap"] for s in result["subnetworks"]]
titles = [f"task {s['task']}: {s['prediction']}" for s in result["subnetworks"]]
st.plotly_chart(figures.heatmaps(maps, titles), width="stretch")

if result["recognisers"]:
    with st.expander("Why this task? The recognisers' strongest features"):
        for rec in result["recognisers"]:
            st.markdown(f"**Recogniser {rec['task']}** — P(task {rec['task']}) = {rec['probability']:.2f}")
            st.dataframe([{"subnetwork": f["subnetwork"], "layer": f["layer"], "unit": f["unit"],
                           "importance": round(f["importance"], 4), "this input's relevance": round(f["relevance"], 4)}
                          for f in rec["features"]], hide_index=True)

st.subheader("Pathways")
chosen = st.selectbox("Subnetwork", range(run.tasks_done), index=int(result["task"]),
                      format_func=lambda m: f"task {m}" + (" (recognised)" if m == result["task"] else ""))
sub = result["subnetworks"][chosen]
flows = relevance_flows(run, sub["unit_relevance"], sub["unit_activation"])
st.plotly_chart(figures.pathways(layers, owners, sub["unit_relevance"], flows,
                                 f"Relevance of this input through task {chosen}'s subnetwork"),
                width="stretch")
st.plotly_chart(figures.stacked_shares(pathway_share(run, sub["unit_relevance"]),
                                       "Share of this input's relevance per pathway", "share of |relevance|"),
                width="stretch")
st.caption(f"Units in the pathway figure: {sum(len(o) for o in owners)}; "
           f"{int(sum(np.sum(o >= 0) for o in owners))} frozen by some task.")
