"""Explore: one image through every task's subnetwork — prediction, recognised task and why, the
pathway from the input to the class unit by unit, and what each unit sees."""
import numpy as np
import streamlit as st

from rerelrp_core.errors import UserError
from rerelrp_core.explain import prepare_upload
from rerelrp_core.lrp_rules import lrp_caveat
from ui import figures, links
from ui.pathway_view import class_probabilities, graph_view
from ui.state import (
    ROOT,
    current_run,
    data_tasks,
    default_layers,
    explanation,
    image_key,
    memo,
    pathway,
    references,
)

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
SAMPLES = sorted((ROOT / "assets" / "samples").glob("*.png"))
GALLERY = 8          # test images shown per task

st.title("Explore an image")
shared = current_run()
run = shared.run if shared else None
if run is None:
    st.info("Pick a run in the sidebar (the bundled demo runs are there from the start).")
    st.stop()
if not run.tasks_done:
    st.warning("This run has no finished task yet.")
    st.stop()
tasks, missing_data = data_tasks(run)
has_masks = run.learner.ownership is not None
links.fresh_page_state("explore")     # another run: its images, units and tasks are not this run's


def pick(choice):
    """Remember the chosen image (and forget the unit clicked on the previous one)."""
    st.session_state["explore_pick"] = choice
    for key in ("explore_unit", "explore_target", "explore_subnetwork", "explore_overlay"):
        st.session_state.pop(key, None)      # a new image starts at its own recognised task


def pick_when_new(source, choice):
    """Pick ``choice`` when the widget ``source`` (the uploader, the index box) shows something new;
    a file still sitting in the uploader must not win over a gallery click on every rerun."""
    if st.session_state.get(f"seen-{source}") != choice:
        st.session_state[f"seen-{source}"] = choice
        if choice is not None:
            pick(choice)


def gallery():
    """Test images of one task to click, plus any test image by index."""
    if missing_data:
        st.info(missing_data)
        return
    c1, c2 = st.columns([2, 1])
    t = c1.selectbox("Task", range(len(tasks)), key="gallery_task",
                     format_func=lambda i: f"task {i}: {', '.join(tasks[i].class_names)}")
    index = c2.number_input("…or test image number", 0, len(tasks[t].x_test) - 1, None, key="gallery_index",
                            help="Any test image of this task by its index.")
    pick_when_new("index", None if index is None else ("test", t, int(index)))
    n = len(tasks[t].x_test)
    shown = list(range(0, n, max(1, n // GALLERY)))[:GALLERY]
    # One row of pictures and one row of choices: two elements, not two per image (every element is a
    # message to each browser, and a class opening the same link pays for each of them per student)
    st.image([figures.image_png(tasks[t].x_test[i].numpy(), scale=3) for i in shown],
             caption=[f"#{i}: {tasks[t].class_names[int(tasks[t].y_test[i])]}" for i in shown], width=84)
    chooser("Explore test image", shown, lambda i: f"#{i}", lambda i: ("test", t, i), key=f"gallery-{t}")


def chooser(label, options, name, choice, key):
    """Pills that pick an image when clicked, then let go (the image shown is the choice, not them)."""
    def picked():
        value = st.session_state[key]
        st.session_state[key] = None
        if value is not None:
            pick(choice(value))
    st.pills(label, options, format_func=name, key=key, on_change=picked)


def uploads():
    """The uploader, how to invert, the bundled samples. Only drawn while its tab is open, so what it
    holds is copied out: the uploaded file (``explore_upload``) and the inversion (``explore_invert``)
    stay when another tab is looked at."""
    upload = st.file_uploader("Upload an image", type=UPLOAD_TYPES, key="upload",
                              help="PNG, JPEG, BMP, GIF, WebP or TIFF; colour or grey; any size. It is "
                                   "resized and, when its background is bright, inverted to look like the "
                                   "training data.")
    choice = None if upload is None else ("upload", upload.name, upload.size)
    # kept when the uploader forgets the file (its tab closed): the image stays until another is picked
    if choice is not None and st.session_state.get("explore_upload", (None,))[0] != choice:
        st.session_state["explore_upload"] = (choice, upload.getvalue())
    options = ["auto", "no", "yes"]
    st.selectbox("Invert colours", options, key="invert",
                 index=options.index(st.session_state.get("explore_invert", "auto")),
                 on_change=lambda: st.session_state.update(explore_invert=st.session_state.invert),
                 help="auto inverts images whose border is bright (dark drawing on white paper).")
    pick_when_new("upload", choice)
    if SAMPLES:
        st.caption("…or one of the bundled samples (real MNIST test digits, saved as PNG files):")
        st.image([figures.file_png(path) for path in SAMPLES], width=56)
        chooser("Explore sample", [path.name for path in SAMPLES], lambda name: name[:-4].split("-")[-1],
                lambda name: ("sample", name), key="samples")


def chosen_image():
    """(image batch (1, C, H, W), caption) of the current choice, or (None, message)."""
    choice = st.session_state.get("explore_pick")
    if choice is None and tasks:
        choice = ("test", 0, 0)
    if choice is None:
        return None, "Upload an image or pick a sample."
    invert = {"auto": "auto", "no": False, "yes": True}[st.session_state.get("explore_invert", "auto")]
    try:
        if choice[0] == "test" and tasks:
            _, t, i = choice
            if t >= len(tasks) or i >= len(tasks[t].x_test):    # a link made on a run with more of them
                shown = f"tasks 0 to {len(tasks) - 1}" if t >= len(tasks) else \
                    f"task {t} has test images 0 to {len(tasks[t].x_test) - 1}"
                st.info(f"Part of this link was ignored: image=test:{t}:{i} ({shown}); showing test image 0 "
                        "of task 0.")
                t, i = 0, 0
                st.session_state["explore_pick"] = ("test", 0, 0)     # the view's link names what is shown
            task = tasks[t]
            true_class = task.class_names[int(task.y_test[i])]
            return task.x_test[i:i + 1], f"test image {i} of task {t} (true class: {true_class})"
        if choice[0] == "sample":
            data = (ROOT / "assets" / "samples" / choice[1]).read_bytes()
            return prepare_upload(run, data, invert), f"sample {choice[1]}"
        upload = st.session_state.get("explore_upload")
        if choice[0] == "upload" and upload is not None and upload[0] == choice:
            return prepare_upload(run, upload[1], invert), choice[1]
    except UserError as error:
        st.error(f"{choice[1]}: {error}")
    return None, "Upload an image or pick a sample."


if not links.hidden("image"):          # an exercise may fix the image
    # Only the open tab is drawn: a class opening one link does not pay for the uploader and the
    # samples once per student (bench/README "Thirty students")
    source, uploader = st.tabs(["Test images", "Upload or sample"], key="explore_source", on_change="rerun")
    if source.open:
        with source:
            gallery()
    if uploader.open:
        with uploader:
            uploads()
x, caption = chosen_image()
if x is None:
    st.info(caption)
    st.stop()
if not links.answer_shown():           # an exercise: the image, and nothing the network says, until answered
    st.image(figures.image_png(x[0].numpy(), scale=max(1, 196 // x.shape[-1])),
             caption=f"The image: {caption}")
    st.stop()


def heat_strip(maps, captions):
    """Heatmaps side by side (red = evidence for, blue = against; over the image when it is in colour).
    One element for the row: every element is a message to the browser, and a class opening the same
    link pays for each of them once per student."""
    st.image([figures.heat_png(heat, 168, x[0].numpy()) for heat in maps], caption=captions, width=168)


def cached_figure(name, build):
    """A figure of this image, built once per run and shared by every session (figures are only
    read when drawn)."""
    return memo(shared, (image_key(x), "figure", name), build)


with st.spinner("Running every subnetwork with LRP…"):
    result = explanation(shared, x)
recognised = result["task"]
why_task = result["recognisers"]
by_class = bool(why_task) and "class" in why_task[0]     # class Gaussians (else the relevance forests)

# -- what the model sees, what it says ---------------------------------------------------------
left, middle, right = st.columns([1, 1, 2])
left.image(figures.image_png(x[0].numpy(), scale=max(1, 196 // x.shape[-1])),
           caption=f"What the model sees: {caption}")
middle.metric("Predicted class", result["class_name"],
              help="Task-agnostic prediction: the recognised task's subnetwork picks the class.")
middle.metric("Recognised task", f"task {recognised}",
              help="The task the recogniser gives this input's highest probability (the task label "
                   "is not given: this is what task-agnostic, TAg, prediction has to find out).")
if result["task_probs"] is not None:
    right.plotly_chart(cached_figure("task probabilities", lambda: figures.probabilities(
        [f"task {t}" for t in range(run.tasks_done)], result["task_probs"], "Probability of each task",
        highlight=recognised)), width="stretch")

# -- why this task -----------------------------------------------------------------------------
decision = pathway(shared, x, recognised, layers=default_layers(len(run.layer_names)))


def unit_name(layer, unit):
    return f"{decision.layers[layer].name}/{unit}"


def why_sentence():
    """One sentence for people: the chain's verdict and the units that carry the decision."""
    top_layer = decision.layers[-1]
    magnitude = np.abs(top_layer.relevance)
    leaders = [int(u) for u in top_layer.top[:2]]
    share = magnitude[leaders].sum() / (magnitude.sum() or 1.0)
    owners = [figures.owner_label(int(top_layer.owner[u])) for u in leaders]
    names = " and ".join(unit_name(len(decision.layers) - 1, u) for u in leaders)
    frozen = ("" if not has_masks else f", frozen by {owners[0]}," if len(leaders) == 1
              else f", both frozen by {owners[0]}," if len(set(owners)) == 1
              else f", frozen by {' and '.join(owners)},")
    carriers = f"unit {names}{frozen} carries" if len(leaders) == 1 else f"units {names}{frozen} carry"
    if result["task_probs"] is None:
        verdict = f"This method has no task recogniser: the class it predicts belongs to task {recognised}"
    elif by_class:
        verdict = (f"Its nearest class is {why_task[recognised]['class']!r} of task {recognised} "
                   f"(probability {result['task_probs'][recognised]:.2f})")
    else:
        verdict = f"The recogniser chain gives task {recognised} {result['task_probs'][recognised]:.2f}"
    if not has_masks:
        return (f"{verdict}. In the whole network (this method has no subnetworks), {carriers} {share:.0%} "
                f"of this input's relevance in {top_layer.name}.")
    kept = int(top_layer.kept.sum())
    return (f"{verdict}. Inside task {recognised}'s subnetwork, {carriers} {share:.0%} of this input's "
            f"relevance in {top_layer.name} (the subnetwork keeps {kept} of its "
            f"{len(top_layer.kept)} units).")


def reuse_sentence():
    """How much of the decision runs through units the task froze itself, and what it reuses."""
    parts = []
    for layer in decision.layers:
        magnitude = np.abs(layer.relevance)
        total = magnitude.sum() or 1.0
        own = magnitude[layer.owner == recognised].sum() / total
        parts.append(f"{layer.name} {own:.0%}")
    return (f"Share of the relevance carried by units task {recognised} froze itself (the rest runs "
            f"through units it reuses from earlier tasks): " + " · ".join(parts) + ".")


st.subheader(f"Why task {recognised}?")
st.markdown(why_sentence())
if has_masks:
    st.caption(reuse_sentence())
deciding = [(len(decision.layers) - 1, int(u), r)
            for r, u in enumerate(decision.layers[-1].top[:3])]
deciding_titles = [unit_name(i, u) + (f" ({figures.owner_label(int(decision.layers[i].owner[u]))})"
                                      if has_masks else "")
                   for i, u, _ in deciding]
deciding_maps = [decision.layers[i].heatmaps[r] for i, _, r in deciding]
heat_strip(deciding_maps, deciding_titles)
st.caption("What the deciding units see: the input relevance that flows through each of them alone "
           "(red = evidence for the class, blue = against).")
if by_class:
    with st.expander("What decided the task", expanded=True):
        st.caption("Each class keeps the means and covariances of up to 4 clusters of its training "
                   f"images in {run.learner.recogniser.space.description} (a space that never changes, "
                   "so they never go stale; no image is kept). The input goes to the task of the nearest "
                   "class, smaller = closer: the distance to the class's nearest cluster is the "
                   "Mahalanobis distance plus a volume term: at most 0, more negative for a cluster whose "
                   "images vary along few directions, scaled by how widely they vary (0 for runs saved "
                   "before it existed), so a distance can be negative.")
        st.markdown("| task | nearest class | distance | Mahalanobis | volume term | probability |\n"
                    "|---:|---|---:|---:|---:|---:|\n"
                    + "\n".join(f"| {rec['task']} | {rec['class']} | {rec['distance']:.3f} | "
                                f"{rec['mahalanobis']:.3f} | {rec['volume term']:.3f} | "
                                f"{rec['probability']:.3f} |" for rec in why_task))
elif why_task:
    with st.expander("What the recognisers look at"):
        for rec in why_task:
            features = ", ".join(f"{f['layer']}/{f['unit']} in task {f['subnetwork']}'s subnetwork"
                                 for f in rec["features"][:4])
            st.markdown(f"- **Recogniser {rec['task']}** (is it task {rec['task']}, or a later one?) says "
                        f"{rec['probability']:.2f}; it weighs most: {features}.")


# -- the pathway -------------------------------------------------------------------------------
st.subheader("Pathway: from the input to the class, unit by unit")
c1, c2 = st.columns(2)
st.session_state.setdefault("explore_subnetwork", recognised)    # a new image starts at its own task
chosen = (st.session_state["explore_subnetwork"] if links.hidden("pathway") else
          c1.selectbox("Subnetwork" if has_masks else "Task (the whole network, this task's classes)",
                       range(run.tasks_done), key="explore_subnetwork",
                       format_func=lambda m: f"task {m}" + (" (recognised)" if m == recognised else "")))
overlay = None
if st.session_state.get("explore_overlay") == chosen:      # a link may name the shown subnetwork twice
    del st.session_state["explore_overlay"]
if links.hidden("pathway"):
    overlay = st.session_state.get("explore_overlay")
elif has_masks:
    overlay = c2.selectbox("Overlay a second subnetwork",
                           [None] + [m for m in range(run.tasks_done) if m != chosen],
                           format_func=lambda m: "— none —" if m is None else f"task {m}",
                           key="explore_overlay",
                           help="Marks the units of this pathway that the other task's subnetwork uses too.")
target = st.session_state.get("explore_target")
target = target if target is not None and run.tasks[chosen].has_row(target) else None
shown = default_layers(len(run.layer_names))
if shown is not None:       # a deep network: the reader picks the layers the graph shows
    shown = st.multiselect("Layers in the graph", range(len(run.layer_names)), default=shown,
                           format_func=lambda i: f"{i}: {run.layer_names[i]}", key="explore_layers",
                           help=f"This network has {len(run.layer_names)} unit layers; the graph shows the "
                                "ones chosen here, each joined to the next chosen one below it.") or shown
path = pathway(shared, x, chosen, target, layers=shown)
other = None
if overlay is not None:
    other = (overlay, [m.numpy() > 0 for m in run.learner.task_masks(overlay)])
class_probs = class_probabilities(path)
selected = st.session_state.get("explore_unit")
graph = cached_figure(("pathway", chosen, target, overlay, selected, tuple(shown or ())),
                      lambda: figures.pathway_graph(graph_view(run, path, x, class_probs, other, selected)))
event = st.plotly_chart(graph, on_select="rerun", selection_mode="points",
                        key="pathway", width="content", config={"displayModeBar": False})
clicked = [p.get("customdata") for p in (event or {}).get("selection", {}).get("points", [])
           if p.get("customdata")]
if clicked:
    layer, unit = int(clicked[0][0]), int(clicked[0][1])
    if layer == figures.CLASS_NODE:
        if unit != path.target:
            st.session_state["explore_target"] = unit
            st.rerun()
    elif selected != (layer, unit):
        st.session_state["explore_unit"] = (layer, unit)
        st.rerun()
st.caption("Each thumbnail is the input relevance that passes through that one unit"
           + ("; its frame is the colour of the task that froze it" if has_masks else "")
           + ". Edge width: relevance handed from one unit to the next "
           "(scaled per gap; red for the class, blue against). Click a unit to see what it responds to; "
           "click a class to explain it.")
health = path.health
caveat = lrp_caveat(run.model)
if caveat:
    st.warning(caveat)
ratios = " · ".join(f"{h.name} {h.ratio:.0%}" for h in health.layers)
if health.ok:
    st.caption(f"LRP health ✓ — relevance kept per layer, against the explained logit ({health.logit:+.2f}): "
               f"{ratios}. The biases take or add a share on the way down (the epsilon and z+ rules give "
               "them their part); a broken explanation would grow far beyond the logit or flip its sign.")
else:
    st.warning(f"LRP health: {health.warning} Relevance per layer against the explained logit "
               f"({health.logit:+.2f}): {ratios}.")


# -- one unit ----------------------------------------------------------------------------------
def unit_heatmap(layer, unit):
    """This input's relevance through one unit alone (from the pathway when it is a top unit)."""
    if (layer, unit) in path.unit_heatmaps:
        return path.unit_heatmaps[(layer, unit)]

    units = [None] * len(path.layers)
    units[layer] = [unit]
    return pathway(shared, x, chosen, path.target, units, layers=[layer]).layers[layer].heatmaps[0]


def unit_view(layer, unit):
    name, owner = path.layers[layer].name, int(path.layers[layer].owner[unit])
    frozen = f" — frozen by {figures.owner_label(owner)}" if has_masks else ""
    st.markdown(f"#### What {name}/{unit} sees{frozen}")
    left, right = st.columns([1, 2])
    left.image(figures.heat_png(unit_heatmap(layer, unit), 224, x[0].numpy()),
               caption=f"{name}/{unit}: this input, through it alone (red = evidence for the class, "
                       "blue = against)")

    def shares_figure():
        shares = [float(s["unit_relevance"][layer][unit]) for s in result["subnetworks"]]
        masks = [run.learner.task_masks(m) for m in range(run.tasks_done)]
        labels = [f"task {m}" + ("" if mask is None or mask[layer][unit] > 0 else " (pruned)")
                  for m, mask in enumerate(masks)]
        return figures.unit_shares(labels, shares, f"{name}/{unit}: share of this input's {name} relevance "
                                   "in every subnetwork")
    right.plotly_chart(cached_figure(("unit shares", layer, unit), shares_figure), width="stretch",
                       key="unit_shares")
    unit_references(layer, unit)


def reference_images(layer, unit):
    """The unit's reference images; while they are being computed, this part of the page (only)
    looks again every second."""
    job = references(shared, tasks)
    polling = not (job.error or job.result is not None)
    st.fragment(run_every=1.0 if polling else None)(reference_part)(job, layer, unit, polling)


def reference_part(job, layer, unit, polling):
    if polling and (job.error or job.result is not None):
        st.rerun()      # a whole rerun draws it, and registers the part again without the timer
    if job.error:
        st.error(f"Reference images could not be computed: {job.error}")
    elif job.result is None:
        st.caption("Finding the test images this unit responds to most (once per run, in the background)…")
    else:
        show_references(job.result, layer, unit)


def show_references(found, layer, unit):
    picks = [(int(t), int(i), float(r))
             for (t, i), r in zip(found.images[layer][unit], found.relevance[layer][unit]) if t >= 0]
    if not picks:
        st.caption("No test image gives this unit positive relevance (it is pruned from every subnetwork or "
                   "never speaks for a class).")
        return
    st.markdown(f"**Test images for which {path.layers[layer].name}/{unit} is most relevant** "
                "(each through its own task's subnetwork, for its own predicted class)")
    st.image([figures.image_png(tasks[t].x_test[i].numpy(), scale=4) for t, i, _ in picks],
             caption=[f"task {t}: {tasks[t].class_names[int(tasks[t].y_test[i])]} · R {r:+.2f}"
                      for t, i, r in picks], width=120)


def unit_references(layer, unit):
    if missing_data:
        st.info(missing_data)
    else:
        reference_images(layer, unit)


if (selected is not None and selected[0] < len(path.layers)
        and selected[1] < len(path.layers[selected[0]].owner)):
    unit_view(*selected)
else:
    st.caption("Click a unit in the pathway to see what it sees.")

# -- every subnetwork at once ------------------------------------------------------------------
st.subheader("LRP heatmap through each task's subnetwork")
st.caption("Red pixels speak for the subnetwork's own predicted class, blue against it.")
maps = [s["heatmap"] for s in result["subnetworks"]]
titles = [f"task {s['task']}: {s['prediction']}" for s in result["subnetworks"]]
heat_strip(maps, titles)
