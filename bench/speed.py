"""Speed benchmark, as ratios measured in one run: LRP relevance versus a plain forward+backward
pass on the same batch, consolidation versus training per task, validation passes of the pruning
search, and task-agnostic latency (one image) and throughput (a batch) with every subnetwork.

    .venv/bin/python bench/speed.py [--run RUN_FOLDER | --save RUN_FOLDER] [--device cpu|cuda]

Without --run it trains a 5-task ReReLRP run and a fine-tuning run on Split Fashion-MNIST first
(about 8 minutes on 2 CPU cores) and reports their times: training, consolidation, evaluation, and
the whole ReReLRP run against fine-tuning's.

The LRP figures are timed in rounds that call each measured function once, in turn, so that a
noisy neighbour slows them alike: ``lrp_over_forward_backward`` attaches and removes the LRP
composite around the one batch (as one explained image does), ``lrp_in_context_over_forward_backward``
runs the batch with the composite already attached (as every batch of a relevance computation
after the first does).
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.class_gaussians import ClassGaussians  # noqa: E402
from rerelrp_core.config import TrainConfig  # noqa: E402
from rerelrp_core.data import SplitConfig, load_dataset, make_tasks  # noqa: E402
from rerelrp_core.learners import resolve_device  # noqa: E402
from rerelrp_core.relevance import lrp_context, relevance_batch  # noqa: E402
from rerelrp_core.runs import load_run, save_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402

from common import machine, write_results  # noqa: E402


def timed(fn, repeat):
    """Median wall time of ``fn`` over ``repeat`` calls (after one warm-up call)."""
    return interleaved([fn], repeat)[0]


def interleaved(fns, repeat):
    """Median wall time of each of ``fns`` over ``repeat`` rounds that call each once, in turn
    (after one warm-up round)."""
    times = [[] for _ in fns]
    for round_ in range(repeat + 1):
        for fn, spent in zip(fns, times):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_:
                spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


def run_figures(run, finetune=None):
    """Training, consolidation and evaluation times of ``run`` (and the whole run against a
    fine-tuning run on the same split, when one is given)."""
    timing = run.metrics["timing_s"]
    total = timing["train"] + timing["consolidate"] + timing["evaluate"]
    rows = {"train_s": timing["train"], "consolidate_s": timing["consolidate"],
            "evaluate_s": timing["evaluate"],
            "consolidate_over_train": round(timing["consolidate"] / max(timing["train"], 1e-9), 3),
            "evaluate_over_run": round(timing["evaluate"] / max(total, 1e-9), 3),
            "pruning_passes_per_task": [p["passes"] for p in run.metrics.get("pruning", [])]}
    if finetune is not None:
        other = finetune.metrics["timing_s"]
        other_total = other["train"] + other["evaluate"]
        rows.update(finetune_train_s=other["train"], finetune_evaluate_s=other["evaluate"],
                    run_over_finetune=round(total / max(other_total, 1e-9), 3))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", help="a saved Fashion-MNIST run (default: train one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--name", help="result file name (default speed-DEVICE)")
    parser.add_argument("--save", help="also save the ReReLRP run it trains to this folder (to compare "
                        "its weights and metrics across versions)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    meta = machine(device)
    print(meta)
    dataset = load_dataset("fashion-mnist")
    finetune = None
    if args.run:
        run = load_run(args.run, device=device)
    else:
        run = train_sequence(dataset, SplitConfig(n_tasks=5), TrainConfig(device=str(device)))
        finetune = train_sequence(dataset, SplitConfig(n_tasks=5),
                                  TrainConfig(method="finetune", device=str(device)))
        if args.save:
            save_run(run, args.save)
    learner, model = run.learner, run.model
    tasks = make_tasks(dataset, run.split)
    x = tasks[0].x_test[:args.batch].to(device)
    rows = (tasks[0].y_test[:args.batch] + tasks[0].offset).to(device)
    rows_out = {}

    # three copies of the same weights, timed in turn: plain passes, LRP attached per batch, LRP
    # attached once
    twin, hooked = copy.deepcopy(model), copy.deepcopy(model)

    def plain():
        twin.zero_grad(set_to_none=True)
        F.cross_entropy(twin(x), rows).backward()

    def lrp():
        with lrp_context(model) as modified:
            relevance_batch(modified, model, x, rows)

    model.eval()
    twin.eval()
    with lrp_context(hooked) as modified:
        def lrp_in_context():
            relevance_batch(modified, hooked, x, rows)

        t_plain, t_lrp, t_context = interleaved([plain, lrp, lrp_in_context], args.repeat)
    rows_out["forward_backward_ms"] = round(1000 * t_plain, 2)
    rows_out["lrp_relevance_ms"] = round(1000 * t_lrp, 2)
    rows_out["lrp_over_forward_backward"] = round(t_lrp / t_plain, 2)
    rows_out["lrp_in_context_ms"] = round(1000 * t_context, 2)
    rows_out["lrp_in_context_over_forward_backward"] = round(t_context / t_plain, 2)
    rows_out["lrp_images_per_s"] = round(args.batch / t_context, 1)

    one = tasks[2].x_test[:1]
    batch = torch.cat([t.x_test[:200] for t in tasks])
    t_one = timed(lambda: learner.recognise(one), args.repeat)
    t_batch = timed(lambda: learner.predict_tag(batch), 2)
    rows_out["tag_one_image_ms"] = round(1000 * t_one, 1)
    recogniser = learner.recogniser
    if isinstance(recogniser, ClassGaussians):     # its share of one image's task-agnostic prediction
        t_recognise = timed(lambda: recogniser.distances(recogniser.features(learner, one)), args.repeat)
        rows_out["recogniser_one_image_ms"] = round(1000 * t_recognise, 2)
        rows_out["recogniser_share_of_tag"] = round(t_recognise / t_one, 3)
    rows_out["tag_batch_images_per_s"] = round(len(batch) / t_batch, 1)
    rows_out["model"] = run.config.arch
    rows_out.update(run_figures(run, finetune))
    rows_out["units"] = sum(model.layer_sizes())
    for key, value in rows_out.items():
        print(f"{key:28} {value}")
    write_results(args.name or f"speed-{device.type}", [rows_out], meta)


if __name__ == "__main__":
    main()
