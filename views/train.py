"""Train: build a task sequence, train it task by task with live progress, manage saved runs."""
import shutil
import time
import uuid

import streamlit as st

from rerelrp_core.architectures import TORCHVISION, torchvision_names
from rerelrp_core.archives import extract_image_zip
from rerelrp_core.colour_sets import PAPER_SPLITS, present
from rerelrp_core.config import TrainConfig, make_config
from rerelrp_core.data import SplitConfig, fashion_mnist_available, folder_name, load_dataset
from rerelrp_core.errors import UserError
from rerelrp_core.learners import LEARNERS
from rerelrp_core.models import ARCHITECTURES
from rerelrp_core.registry import check_name, delete_run, list_runs, rename_run, run_zip
from ui import figures
from ui.jobs import QUEUE, TrainingJob
from ui.report import run_report
from ui.state import RUNS_DIR, WEIGHTS_DIR, may_manage, open_run, own_run, weights_files

COLOUR_SETS = {"cifar10": "CIFAR-10 (32×32 colour)", "cifar100": "CIFAR-100 (32×32 colour)",
               "svhn": "SVHN (32×32 colour digits)", "emnist-letters": "EMNIST letters (28×28)",
               "pathmnist": "PathMNIST (28×28 colour tissue)",
               "bloodmnist": "BloodMNIST (28×28 colour cells)",
               "tiny-imagenet": "Tiny-ImageNet (64×64 colour)"}
DATASETS = {"mnist5k": "MNIST-5k (bundled, 28×28 digits)", "digits": "scikit-learn digits (8×8, fastest)",
            "fashion-mnist": "Fashion-MNIST (full, Debian package)",
            "mnist5k-fashion": "MNIST-5k digits + Fashion-MNIST (20 classes, for 10-task sequences)",
            "zip": "Your images (a zip with one folder per class)"}
METHOD_HELP = ("rerelrp: prune + freeze + recognise tasks (stores no image); "
               "finetune: no protection (lower bound); "
               "joint: all data seen so far (upper bound, stores every image); "
               "ewc / lwf: regularisation baselines; "
               "icarl: 2,000 stored images, distillation and a nearest-mean classifier; "
               "replay: 2,000 stored images mixed into every batch (the plain rehearsal baseline).")

st.title("Train a task sequence")
job = st.session_state.get("job")


def uploaded_dataset(upload, image_size, colour):
    """Unpack an uploaded zip into this session's own folder and check it loads; returns its
    data-set name (``folder:PATH``)."""
    key = (upload.name, upload.size, image_size, colour)
    if st.session_state.get("zip_key") != key:
        target = RUNS_DIR / ".uploads" / uuid.uuid4().hex
        try:
            folder = extract_image_zip(upload.getvalue(), target)
            dataset = load_dataset(folder_name(folder, image_size, 3 if colour else 1))
        except UserError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        st.session_state["zip_key"], st.session_state["zip_dataset"] = key, dataset.name
        summary = (f"{len(dataset.class_names)} classes ({', '.join(dataset.class_names[:8])}"
                   f"{'…' if len(dataset.class_names) > 8 else ''}), "
                   f"{len(dataset.x_train)} training and {len(dataset.x_test)} test images")
        st.session_state["zip_summary"] = summary
    return st.session_state["zip_dataset"]

def report_of(path, name):
    return run_report(open_run(path).run, name)


with st.form("train"):
    c1, c2, c3 = st.columns(3)
    datasets = [d for d in DATASETS if "fashion" not in d or fashion_mnist_available()]
    datasets[-1:-1] = [name for name in COLOUR_SETS if present(name)]     # before "Your images"
    dataset = c1.selectbox("Data set", datasets, format_func=lambda d: DATASETS.get(d) or COLOUR_SETS[d],
                           help="Fashion-MNIST appears when its files are installed "
                                "(apt-get install dataset-fashion-mnist); the paper's colour sets when "
                                "their files are in the data folder ($RERELRP_DATA, see the README). "
                                "Your images are resized and kept in colour or grey as set below.")
    archive = st.file_uploader("Zip of your images (used when the data set is 'Your images')", type=["zip"],
                               help="One folder per class, at least two classes and two images per class.")
    z1, z2 = st.columns(2)
    image_size = z1.selectbox("Image size (your images)", [28, 32, 64],
                              help="Your images are resized to this many pixels a side.")
    colour = z2.checkbox("Keep colour (your images)", help="Off: converted to grey.")
    n_tasks = c2.number_input("Tasks", 1, 50, 5,
                              help="The classes are split evenly over the tasks, in class order "
                                   "(the number of tasks must divide the number of classes); for the "
                                   "paper's data sets, its own split when the number of tasks matches it "
                                   "(e.g. PathMNIST: 4 tasks of 3, 2, 2, 2 classes).")
    method = c3.selectbox("Method", sorted(LEARNERS), index=sorted(LEARNERS).index("rerelrp"),
                          help=METHOD_HELP)
    c4, c5, c6, c7 = st.columns(4)
    arch = c4.selectbox("Model", list(ARCHITECTURES) + [TORCHVISION + n for n in torchvision_names()],
                        help="cnn: fast default; vgg11/resnet18: torchvision models adapted to small "
                             "inputs; torchvision:NAME: any of torchvision's classification models, "
                             "adapted as it is (deep ones are slow on a CPU: lower the learning rate).")
    epochs = c5.number_input("Max epochs per task", 1, 100, 5,
                             help="Early stopping on validation may stop sooner.")
    acc_drop = c6.number_input("acc_drop (points)", 0.0, 20.0, TrainConfig().acc_drop, 0.25,
                               help="How much validation accuracy pruning may cost each task.")
    seed = c7.number_input("Seed", 0, 10_000, 0)
    c8, c9 = st.columns(2)
    weights = c8.selectbox("Start from weights", [None] + weights_files(),
                           format_func=lambda f: "random initialisation" if f is None else f,
                           help=f"Weights files the server keeps in {WEIGHTS_DIR} (safetensors or .pt "
                                "state dicts); the classifier's tensors are left out.")
    input_size = c9.number_input("Resize images to (px, 0 = as they are)", 0, 512, 0,
                                 help="For networks that need larger images (inception_v3: 75, vit: 224).")
    st.session_state.setdefault("run_name", time.strftime("run-%Y%m%d-%H%M%S"))
    name = st.text_input("Run name", key="run_name", help="Letters, digits, '.', '_' or '-'.")
    submitted = st.form_submit_button("Start training", type="primary",
                                      disabled=job is not None and job.active)

if submitted:
    try:
        check_name(name)
        if dataset == "zip":
            if archive is None:
                raise UserError("Upload a zip of your images first (one folder per class).")
            dataset = uploaded_dataset(archive, image_size, colour)
            st.caption(f"Your data: {st.session_state['zip_summary']}")
        # runs trained here keep per-task snapshots: the Forgetting page's explanation drift needs them
        config = make_config(method=method, arch=arch, epochs=int(epochs), acc_drop=float(acc_drop),
                             seed=int(seed), keep_snapshots=True, input_size=int(input_size) or None,
                             weights=str(WEIGHTS_DIR / weights) if weights else None)
        paper = PAPER_SPLITS.get(dataset)
        sizes = paper if paper and len(paper) == int(n_tasks) else None
        split = SplitConfig(n_tasks=int(n_tasks), classes_per_task=sizes, seed=int(seed))
        job = TrainingJob(dataset, split, config, RUNS_DIR,
                          name).start()
        st.session_state["job"] = job
    except UserError as error:
        st.error(str(error))


@st.fragment(run_every=1.0)
def show_progress():
    """Redrawn every second from the job's progress; the rest of the page stays interactive."""
    job = st.session_state.get("job")
    if job is None:
        st.info("No training in this session yet. Pick the settings above and press Start training.")
        return
    latest = job.latest
    n_tasks = job.split.n_tasks
    done = job.run.tasks_done if job.run is not None else 0
    st.progress(done / n_tasks, text=f"{job.name}: {done}/{n_tasks} tasks finished · {job.state} · "
                                      f"{job.elapsed:.0f} s")
    if job.state == "queued":
        st.info(f"Waiting for a free training slot: place {job.place() or 1} in this server's queue "
                f"({QUEUE.running} training now, at most {QUEUE.slots} at once).")
    elif latest is not None and job.state == "running":
        st.caption(latest.describe())
    if job.active and st.button("Cancel training", key="cancel"):
        job.cancel()
    if job.state == "failed":
        st.error(job.error)
    elif job.state == "cancelled":
        kept = job.run is not None and job.run.tasks_done
        st.warning("Cancelled. The last finished task is kept as a checkpoint." if kept
                   else "Cancelled before any task finished: nothing was kept.")
    if job.state in ("cancelled", "failed") and job.run is not None and job.run.tasks_done:
        if st.button(f"Resume from task {job.run.tasks_done}", key="resume",
                     help="Continue from the last finished task; the result equals an uninterrupted run."):
            st.session_state["job"] = job.resumed().start()
            st.rerun()
    elif job.state == "finished":
        st.success(f"Finished and saved as {job.saved_to.name}. Pick it in the sidebar to explore it.")
        own_run(job.saved_to.name)
        if not st.session_state.get(f"listed-{job.saved_to}"):
            # once: redraw the whole page so the sidebar and "Saved runs" list the new run
            st.session_state[f"listed-{job.saved_to}"] = True
            st.rerun(scope="app")
    if job.run is not None and job.run.tasks_done:
        history = job.run.history
        c1, c2 = st.columns(2)
        c1.plotly_chart(figures.accuracy_matrix(history["acc_taw"], "Task-aware accuracy (%)"),
                        width="stretch", key="live_taw")
        c2.plotly_chart(figures.accuracy_matrix(history["acc_tag"], "Task-agnostic accuracy (%)"),
                        width="stretch", key="live_tag")
        if history["capacity"]:
            free = history["capacity"][-1]
            shares = {layer: {"frozen": 1 - f, "free": f} for layer, f in free.items()}
            st.plotly_chart(figures.stacked_shares(shares, "Capacity meter: frozen and free units per layer",
                                                   "share of units"),
                            width="stretch", key="live_capacity")


show_progress()

st.divider()
st.subheader("Saved runs")
runs = list_runs(RUNS_DIR)
if not runs:
    st.caption(f"No saved run in {RUNS_DIR} yet.")
else:
    st.caption("You can rename or delete the runs this session trained; the others (and the bundled demo "
               "runs) are read-only here unless the server runs with RERELRP_ADMIN=1.")
for entry in runs:
    with st.expander(entry["label"]):
        c1, c2, c3 = st.columns([2, 1, 1])
        # callables: the zip and the report are made only when their button is clicked
        saved, saved_name = entry["path"], entry["name"]
        c2.download_button("Download (.zip)", lambda path=saved: run_zip(path), f"{saved_name}.zip",
                           "application/zip", key=f"download-{saved_name}")
        c3.download_button("HTML report", lambda path=saved, name=saved_name: report_of(path, name),
                           f"{saved_name}-report.html", "text/html", key=f"report-{saved_name}",
                           help="The run's metrics and figures in one file that opens offline in a browser.")
        if not may_manage(entry["name"]):
            c1.caption("Trained in another session: read-only.")
            continue
        new_name = c1.text_input("New name", entry["name"], key=f"rename-{entry['name']}")
        if c1.button("Rename", key=f"do-rename-{entry['name']}"):
            try:
                rename_run(RUNS_DIR, entry["name"], new_name)
                own_run(new_name, instead_of=entry["name"])
                st.rerun()
            except UserError as error:
                st.error(str(error))
        if c1.button("Delete", key=f"delete-{entry['name']}"):
            try:
                delete_run(RUNS_DIR, entry["name"])
                own_run(None, instead_of=entry["name"])
                st.rerun()
            except UserError as error:
                st.error(str(error))
