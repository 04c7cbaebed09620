"""Add per-image outcomes (outcomes.safetensors, see rerelrp_core/outcomes.py) to demo runs saved
before runs kept them: each run is trained again from its own stored settings, and the file is
written only when the new run's accuracy matrices equal the stored ones exactly (the same run, bit
for bit); nothing else in the folder changes.

    .venv/bin/python scripts/add_demo_outcomes.py [NAME ...]     (default: every demo run without one)
"""
import sys
from pathlib import Path

from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rerelrp_core  # noqa: E402,F401
from rerelrp_core.data import load_dataset  # noqa: E402
from rerelrp_core.outcomes import nbytes, to_tensors  # noqa: E402
from rerelrp_core.runs import load_run  # noqa: E402
from rerelrp_core.sequence import train_sequence  # noqa: E402

DEMO_RUNS = ROOT / "assets" / "demo-runs"


def main():
    names = sys.argv[1:] or sorted(p.name for p in DEMO_RUNS.iterdir()
                                   if not (p / "outcomes.safetensors").exists())
    for name in names:
        stored = load_run(DEMO_RUNS / name, device="cpu")
        again = train_sequence(load_dataset(stored.dataset), stored.split, stored.config)
        same = all(again.history[k] == stored.history[k] for k in ("acc_taw", "acc_tag"))
        if not same:
            print(f"{name}: training it again gives other matrices; no outcomes written")
            continue
        save_file(to_tensors(again.outcomes), str(DEMO_RUNS / name / "outcomes.safetensors"))
        print(f"{name}: outcomes written ({nbytes(again.outcomes):,} bytes)")


if __name__ == "__main__":
    main()
