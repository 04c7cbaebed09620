"""Memory benchmark: what each saved run keeps per task beyond the shared backbone, by kind (ReReLRP:
head rows, masks, relevance values, logits, column indices; iCaRL / joint: head rows and images at
one byte per pixel), and the size of its learner file once saved by this version.

    .venv/bin/python bench/memory.py RUN_FOLDER [RUN_FOLDER ...]

Give runs of the same split (e.g. saved by ``bench/accuracy.py --save-runs``) to compare methods.
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.runs import load_run, save_run  # noqa: E402

from common import machine, write_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--name", default="memory")
    args = parser.parse_args()
    rows = []
    for folder in args.runs:
        run = load_run(folder)
        learner = run.learner
        with tempfile.TemporaryDirectory() as tmp:      # the file as this version writes it
            save_run(run, Path(tmp) / "run")
            file_bytes = (Path(tmp) / "run" / "learner.safetensors").stat().st_size
        for k in range(run.tasks_done):
            parts = learner.stored_parts(k)
            rows.append({"run": Path(folder).name, "method": run.config.method, "dataset": run.dataset,
                         "task": k, **parts, "total": sum(parts.values()), "learner_file_bytes": file_bytes})
    print_table(rows)
    write_results(args.name, rows, machine("cpu"))


def print_table(rows):
    kinds = list(dict.fromkeys(k for r in rows for k in r
                               if k not in ("run", "method", "dataset", "task", "total",
                                            "learner_file_bytes")))
    print("\nbytes kept per task beyond the shared backbone (kB = 1000 bytes)")
    print(f"{'run':36} {'task':>4} " + " ".join(f"{k:>16}" for k in kinds) + f" {'total':>10}")
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        for r in mine:
            print(f"{run:36} {r['task']:>4} " + " ".join(f"{r.get(k, 0) / 1e3:>14.1f}kB" for k in kinds)
                  + f" {r['total'] / 1e3:>8.1f}kB")
        print(f"{run:36} {'all':>4} "
              + " ".join(f"{sum(r.get(k, 0) for r in mine) / 1e3:>14.1f}kB" for k in kinds)
              + f" {sum(r['total'] for r in mine) / 1e3:>8.1f}kB"
                f"   learner file {mine[0]['learner_file_bytes'] / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
