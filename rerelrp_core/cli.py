"""Command line: ``python -m rerelrp_core train ...`` (or the ``rerelrp`` console script).

Bad input ends with one sentence on stderr and exit code 2, never a traceback.
"""
import argparse
import functools
import json
import sys
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from .colour_sets import default_split
from .config import TrainConfig, make_config
from .data import SplitConfig, dataset_names, load_dataset
from .errors import UserError
from .learners import LEARNERS
from .models import ARCHITECTURES
from .progress import Stage
from .recognition import RECOGNITION_PRESETS
from .runs import load_run, save_run
from .sequence import train_sequence
from .sweep import parse_settings, plan, run_sweep


def build_parser():
    parser = argparse.ArgumentParser(prog="rerelrp", description="ReReLRP continual learning engine.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a task sequence and write OUT/metrics.json")
    add_data_options(train)
    add_model_options(train)
    add_training_options(train)
    add_run_options(train)
    add_sweep_command(commands)
    show = commands.add_parser("show", help="print the metrics table of a saved run")
    show.add_argument("run", help="run folder")
    show.add_argument("--device", help="cpu, cuda or cuda:N (default: the run's own device when this "
                                       "machine has it, else the CPU)")
    return parser


def add_data_options(train):
    train.add_argument("--dataset", default="fashion-mnist",
                       help=f"{', '.join(dataset_names())}, or folder:PATH (one sub-folder per class; "
                            "folder-32-rgb:PATH keeps colour at 32 px)")
    train.add_argument("--data-dir", help="where the colour data sets are looked for "
                                          "(default: $RERELRP_DATA, else ~/.cache/rerelrp/data)")
    train.add_argument("--download", action="store_true",
                       help="fetch the data set if it is missing (Fashion-MNIST, CIFAR-10/100, SVHN, EMNIST "
                            "letters, Tiny-ImageNet; official sources, checksums verified)")
    train.add_argument("--tasks", type=int, help="number of tasks (default: the paper's split for its data "
                                                  "sets, else 5)")
    train.add_argument("--classes-per-task", type=int, nargs="+",
                       help="classes in each task (default: even split)")
    train.add_argument("--class-order", type=int, nargs="+",
                       help="class ids in task order (default 0, 1, ...)")


def add_model_options(train):
    train.add_argument("--model", default="cnn",
                       help=f"{', '.join(ARCHITECTURES)} (built in), torchvision:NAME (any of torchvision's "
                            "classification models) or PATH.py:FUNCTION (a function of yours that returns an "
                            "nn.Module)")
    train.add_argument("--weights", help="start the model from this state dict (.safetensors, or .pt/.pth "
                                         "read with weights_only=True); its classifier is left out")
    train.add_argument("--input-size", type=int,
                       help="resize images to this square size inside the model (for networks that need "
                            "larger inputs, e.g. 75 for inception_v3)")


# flag -> (type, help) of every training option; defaults come from TrainConfig (None: its own)
TRAINING_OPTIONS = {
    "--method": (str, f"one of {', '.join(sorted(LEARNERS))} (default rerelrp)"),
    "--epochs": (int, "maximum epochs per task (early stopping may end sooner)"),
    "--lr": (float, "SGD learning rate (deep networks from scratch want about 0.01)"),
    "--batch-size": (int, None),
    "--acc-drop": (float, "accuracy points pruning may cost (default 0.25; 1, the paper's, with "
                          "--recognition faithful or forest)"),
    "--ref-per-class": (int, None),
    "--loss-scope": (str, "task or seen"),
    "--max-keep-fraction": (float, "cap on the share of units one task may keep"),
    "--max-claim-fraction": (float, "largest share of each layer's free units one task may freeze "
                                    "(default 0.75; 1 = no cap, as in the paper)"),
    "--claim-cap-tolerance": (float, "accuracy points beyond acc_drop the claim cap may cost a task "
                                     "before it gives way (default 1)"),
    "--reinit-free": (bool, "re-initialise free units before each task"),
    "--augment": (str, "auto, none or crop-flip (default auto: pad 4, random resized crop and flip for "
                       "CIFAR-10/100 and SVHN, as in the paper; none otherwise)"),
    "--reg-strength": (float, "ewc / lwf regularisation weight (default: EWC 50000, LwF 0.5, chosen on "
                              "validation)"),
    "--memory": (int, "icarl's and replay's image buffer size"),
    "--seed": (int, None),
    "--device": (str, "auto (the default), cpu, cuda or cuda:N; with --resume: the device the run was "
                      "trained with when this machine has it"),
}


def add_training_options(train):
    """Every TrainConfig option with a flag; values are checked where the config is built."""
    for flag, (kind, text) in TRAINING_OPTIONS.items():
        if kind is bool:
            train.add_argument(flag, action="store_true", help=text)
        else:
            train.add_argument(flag, type=kind, help=text)
    train.add_argument("--recognition", default="ours", choices=sorted(RECOGNITION_PRESETS),
                       help="task recognition: 'ours' (class Gaussians of the input image), "
                            "'subnetwork' (class Gaussians in task 0's subnetwork, our default before "
                            "run format 9), 'faithful' (the paper's relevance forests) or 'forest' (the "
                            "forests with more context and data)")


def add_run_options(train):
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last finished task (a checkpoint is written "
                            "after every task)")


def add_sweep_command(commands):
    sweep = commands.add_parser("sweep", help="every method x seed x setting as a Ray task, one run folder "
                                              "each, with DIR/summary.csv and .json")
    sweep.add_argument("--dataset", required=True)
    sweep.add_argument("--methods", nargs="+", required=True, choices=sorted(LEARNERS))
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0])
    sweep.add_argument("--tasks", type=int, help="number of tasks (default: the paper's split for its data "
                                                  "sets, else 5)")
    sweep.add_argument("--set", nargs="*", default=[], metavar="KEY=V1,V2",
                       help="settings to sweep, e.g. acc_drop=1,2 epochs=5, or the task split's "
                            "class_order=1-0-3-2-5-4-7-6-9-8,9-8-7-6-5-4-3-2-1-0")
    sweep.add_argument("--out", required=True, help="sweep folder (one run folder per combination)")
    sweep.add_argument("--address", help="an existing Ray cluster to join (default: a local Ray)")
    sweep.add_argument("--cpus-per-run", type=float, default=1, help="CPUs (and torch threads) per run")
    sweep.add_argument("--gpus-per-run", type=float, default=0)
    sweep.add_argument("--data-dir")
    sweep.add_argument("--quiet", action="store_true")


def config_from_args(args):
    """The TrainConfig of the parsed ``train`` arguments: every field with a flag, by that flag
    (options left out take their defaults in make_config)."""
    options = {f.name: getattr(args, f.metadata["flag"][2:].replace("-", "_"))
               for f in fields(TrainConfig) if f.metadata.get("flag") and f.name != "recognition"}
    return make_config(recognition=args.recognition, **options)


class ProgressBars:
    """tqdm bars: one for the task sequence, one for the epochs of the current task."""

    def __init__(self, n_tasks, enabled=True):
        self.enabled = enabled
        self.tasks = tqdm(total=n_tasks, desc="tasks", position=0, disable=not enabled)
        self.epochs = None

    def __call__(self, event):
        if event.stage is Stage.TRAIN:
            if self.epochs is None or event.done == 1:
                self._close_epochs()
                self.epochs = tqdm(total=event.total, desc=f"task {event.task} epochs", position=1,
                                   leave=False, disable=not self.enabled)
            self.epochs.update(1)
            self.epochs.set_postfix(loss=f"{event.loss:.3f}", val=f"{event.val_acc:.1f}")
        elif event.stage is Stage.EVALUATE:
            self._close_epochs()
            self.tasks.update(1)
        elif event.stage is Stage.PRUNE:
            self.tasks.set_postfix(kept=event.kept, passes=event.passes)

    def _close_epochs(self):
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None

    def close(self):
        self._close_epochs()
        self.tasks.close()


def format_table(metrics):
    """A per-task table: TAw and TAg accuracy of every task after each step, and the averages."""
    taw, tag = metrics["acc_taw"], metrics["acc_tag"]
    n = len(taw)
    lines = ["after | " + " | ".join(f"T{k} TAw/TAg" for k in range(n)) + " | avg TAw | avg TAg"]
    for t in range(n):
        cells = [f"{taw[t][k]:5.1f}/{tag[t][k]:5.1f}" if k <= t else "     -     " for k in range(n)]
        lines.append(f"T{t:<4} | " + " | ".join(f"{c:>11}" for c in cells)
                     + f" | {metrics['avg_acc_taw'][t]:7.2f} | {metrics['avg_acc_tag'][t]:7.2f}")
    lines.append(f"forgetting TAw {metrics['forgetting_taw']:.2f}  TAg {metrics['forgetting_tag']:.2f}   "
                 f"BWT TAw {metrics['bwt_taw']:.2f}  TAg {metrics['bwt_tag']:.2f}")
    timing = metrics["timing_s"]
    lines.append(f"time (s): train {timing['train']:.1f}  consolidate {timing['consolidate']:.1f}  "
                 f"evaluate {timing['evaluate']:.1f}")
    return "\n".join(lines)


def command_train(args):
    out = Path(args.out)
    previous = None
    if args.resume and (out / "run.json").exists():
        previous = load_run(out, device=args.device)
        _say_device(previous)
        split, config, dataset_name = previous.split, previous.config, previous.dataset
        print(f"resuming {out}: {previous.tasks_done} of {split.n_tasks} tasks finished "
              "(the run's own settings are used)", file=sys.stderr)
    else:
        if (out / "run.json").exists():
            raise UserError(f"{out} already holds a run; "
                            "pass --resume to continue it or choose another --out.")
        config, dataset_name = config_from_args(args), args.dataset
        n_tasks, sizes = default_split(args.dataset, args.tasks, args.classes_per_task)
        split = SplitConfig(n_tasks=n_tasks, classes_per_task=sizes, class_order=args.class_order,
                            seed=config.seed)
    kwargs = {"download": True} if args.download else {}
    dataset = load_dataset(dataset_name, data_dir=args.data_dir, **kwargs)
    bars = ProgressBars(split.n_tasks, enabled=not args.quiet)
    if previous is not None:
        bars.tasks.update(previous.tasks_done)
    try:
        run = train_sequence(dataset, split, config, progress=bars,
                             on_task_end=functools.partial(save_run, out=out), run=previous)
    finally:
        bars.close()
    print(format_table(run.metrics))
    print(f"run written to {out} (metrics: {out / 'metrics.json'})")


def _say_device(run):
    if run.device_note:
        print(run.device_note, file=sys.stderr)


def command_show(args):
    run = load_run(args.run, device=args.device)
    _say_device(run)
    if not run.tasks_done:
        raise UserError(f"{args.run} has no finished task yet.")
    print(format_table(run.metrics))
    print(json.dumps({k: run.metrics[k] for k in ("stored_bytes_per_task", "capacity") if k in run.metrics}))


def command_sweep(args):
    runs = plan(args.dataset, args.methods, args.seeds, args.tasks, parse_settings(args.set))
    rows = run_sweep(runs, args.out, args.address, args.cpus_per_run, args.gpus_per_run, args.data_dir,
                     args.quiet)
    failed = [row for row in rows if "error" in row]
    print(f"{len(rows) - len(failed)} of {len(rows)} runs done; summary in {Path(args.out) / 'summary.csv'}")
    for row in failed:
        print(f"{row['name']} failed: {row['error']}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        code = {"train": command_train, "show": command_show, "sweep": command_sweep}[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished task's checkpoint is in the run folder.", file=sys.stderr)
        return 130
    return code or 0
