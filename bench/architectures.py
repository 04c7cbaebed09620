"""Architectures benchmark: the smallest member of every torchvision family (and a user's own module
through PATH.py:FUNCTION) adapted, trained and explained on Split MNIST-5k resized to the family's
input size. One row per family: parameters, unit layers, units, seconds per epoch, LRP time over one
plain forward+backward, conservation, and TAw / TAg / TAw forgetting after a short sequence
(ReReLRP, lr 0.01, batch 32, no learning-rate decay; seconds per epoch include the validation and
BatchNorm passes of each epoch).

    .venv/bin/python bench/architectures.py [--families resnet mobilenet_v3 ...] [--per-class 150]
        [--per-class-large 30] [--tasks 2] [--epochs 3] [--device cpu|cuda] [--name architectures]

Conservation is the share of the relevance entering the backbone (at the head's input) that
reaches the input image, over 8 test images: first on the untrained network with BatchNorm
statistics of the training images ("untrained"), then on the trained full network ("trained").
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.config import make_config  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset  # noqa: E402
from rerelrp_core.errors import UserError  # noqa: E402
from rerelrp_core.learners import resolve_device  # noqa: E402
from rerelrp_core.lrp_rules import lrp_caveat  # noqa: E402
from rerelrp_core.models import build_model, parameter_count  # noqa: E402
from rerelrp_core.relevance import lrp_context, relevance_batch  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402

from common import machine, write_results  # noqa: E402

OWN = str(Path(__file__).resolve().parent.parent / "tests" / "models" / "own_net.py") + ":build"
# family -> its smallest member, and the input size it needs (None: the data's 28 px)
FAMILIES = {
    "own module": (OWN, None), "alexnet": ("torchvision:alexnet", 64),
    "convnext": ("torchvision:convnext_tiny", 32), "densenet": ("torchvision:densenet121", 32),
    "efficientnet": ("torchvision:efficientnet_b0", 32),
    "efficientnet_v2": ("torchvision:efficientnet_v2_s", 32),
    "googlenet": ("torchvision:googlenet", 32), "inception_v3": ("torchvision:inception_v3", 75),
    "maxvit": ("torchvision:maxvit_t", 224), "mnasnet": ("torchvision:mnasnet0_5", 32),
    "mobilenet_v2": ("torchvision:mobilenet_v2", 32), "mobilenet_v3": ("torchvision:mobilenet_v3_small", 32),
    "regnet_x": ("torchvision:regnet_x_400mf", 32), "regnet_y": ("torchvision:regnet_y_400mf", 32),
    "resnet": ("torchvision:resnet18", 32), "resnext": ("torchvision:resnext50_32x4d", 32),
    "shufflenet_v2": ("torchvision:shufflenet_v2_x0_5", 32), "squeezenet": ("torchvision:squeezenet1_1", 32),
    "swin": ("torchvision:swin_t", 224), "swin_v2": ("torchvision:swin_v2_t", 256),
    "vgg": ("torchvision:vgg11_bn", 32), "vit": ("torchvision:vit_b_16", 224),
    "wide_resnet": ("torchvision:wide_resnet50_2", 32),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--per-class", type=int, default=150, help="training images per class")
    parser.add_argument("--per-class-large", type=int, default=30,
                        help="training images per class for families that need 128 px or more")
    parser.add_argument("--test-per-class-large", type=int, default=None,
                        help="test images per class for those families (default: all 100)")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="architectures")
    args = parser.parse_args()
    device = resolve_device(args.device)
    meta = machine(device)
    print(meta, flush=True)
    full = load_dataset("mnist5k")
    rows = []
    for family in args.families:
        arch, size = FAMILIES[family]
        large = (size or 28) >= 128
        per_class = args.per_class_large if large else args.per_class
        data = subsample(full, per_class, args.test_per_class_large if large else None)
        try:
            rows.append({"family": family, "model": arch, "input_px": size or 28, "per_class": per_class,
                         **measure(arch, size, data, args, device)})
        except UserError as error:
            rows.append({"family": family, "model": arch, "input_px": size or 28, "error": str(error)})
        print_row(rows[-1])
        write_results(args.name, rows, meta)       # after every family: a crash keeps the rows before


def subsample(dataset, per_class, test_per_class=None):
    """The first ``per_class`` training images of every class, and the first ``test_per_class``
    test images (None: the test split whole)."""
    def first(labels, n):
        return torch.cat([torch.nonzero(labels == c).flatten()[:n] for c in range(dataset.n_classes)])
    keep = first(dataset.y_train, per_class)
    dataset = replace(dataset, x_train=dataset.x_train[keep], y_train=dataset.y_train[keep])
    if test_per_class is not None:
        keep = first(dataset.y_test, test_per_class)
        dataset = replace(dataset, x_test=dataset.x_test[keep], y_test=dataset.y_test[keep])
    return dataset


def measure(arch, size, data, args, device):
    n_classes = data.n_classes
    model = build_model(arch, data.input_shape, n_classes, input_size=size).to(device)
    calibrate(model, data.x_train[:128].to(device))
    row = {"params_M": round(parameter_count(model) / 1e6, 2), "unit_layers": len(model.unit_layers),
           "units": sum(model.layer_sizes()),
           "lrp_over_fwd_bwd": lrp_ratio(model, data.x_test[:32 if (size or 28) < 128 else 8].to(device)),
           "conservation_untrained": conservation(model, data.x_test[:8].to(device)),
           "lrp_caveat": lrp_caveat(model) or ""}
    config = make_config(method="rerelrp", arch=arch, input_size=size, epochs=args.epochs, lr=args.lr,
                         batch_size=32, ref_per_class=20, device=str(device), max_decays=0,
                         relevance_batch=256 if (size or 28) < 128 else 16)
    split = SplitConfig(n_tasks=args.tasks, classes_per_task=[2] * args.tasks, seed=0)
    started = time.perf_counter()
    run = train_sequence(data, split, config)
    seconds = time.perf_counter() - started
    return {**row, "s_per_epoch": round(run.learner.timing["train"] / (args.tasks * args.epochs), 2),
            "run_s": round(seconds, 1),
            "taw": round(run.metrics["avg_acc_taw"][-1], 2), "tag": round(run.metrics["avg_acc_tag"][-1], 2),
            "forgetting_taw": run.metrics["forgetting_taw"],
            "conservation_trained": conservation(run.model, data.x_test[:8].to(device))}


@torch.no_grad()
def calibrate(model, x):
    """BatchNorm statistics of real images (an untrained network's are those of nothing)."""
    model.train()
    model(x)
    model.eval()


def lrp_ratio(model, x, repeats=3):
    """Median time of one LRP pass over ``x`` divided by that of one plain forward+backward."""
    rows = torch.zeros(len(x), dtype=torch.int64, device=x.device)

    def plain():
        model.zero_grad(set_to_none=True)
        model(x).gather(1, rows[:, None]).sum().backward()

    def lrp():
        with lrp_context(model) as modified:
            relevance_batch(modified, model, x, rows, want_input=True)
    return round(median_time(lrp, repeats) / median_time(plain, repeats), 2)


def median_time(work, repeats):
    times = []
    for _ in range(repeats + 1):       # the first run warms up and is not counted
        started = time.perf_counter()
        work()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return sorted(times[1:])[len(times[1:]) // 2]


def conservation(model, x):
    """Mean and least share, over ``x``, of the relevance at the head's input reaching the input."""
    entering = {}
    handle = model.head.register_full_backward_hook(lambda m, grad_in, _: entering.update(r=grad_in[0]))
    try:
        with lrp_context(model) as modified:
            out = relevance_batch(modified, model, x, torch.zeros(len(x), dtype=torch.int64, device=x.device),
                                  want_input=True)
    finally:
        handle.remove()
    share = out.input.flatten(1).sum(1) / entering["r"].sum(1)
    return f"{float(share.mean()):.3f} (min {float(share.min()):.3f})"


def print_row(row):
    if "error" in row:
        print(f"{row['family']:16} {row['model']:34} error: {row['error']}", flush=True)
        return
    print(f"{row['family']:16} {row['params_M']:6.2f}M {row['unit_layers']:4d} layers "
          f"{row['units']:6d} units "
          f"{row['s_per_epoch']:7.2f} s/epoch  LRP/fwd+bwd {row['lrp_over_fwd_bwd']:5.2f}  "
          f"conservation {row['conservation_untrained']} / {row['conservation_trained']}  "
          f"TAw {row['taw']:6.2f} TAg {row['tag']:6.2f} forgetting {row['forgetting_taw']:.2f}", flush=True)


if __name__ == "__main__":
    main()
