"""Helpers shared by the benchmark scripts: machine description and result files."""
import csv
import json
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine(device):
    """What every printed figure must come with: device, torch threads, load average."""
    return {"device": str(device), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads(), "loadavg": [round(v, 2) for v in os.getloadavg()],
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__}


def write_results(name, rows, meta):
    """bench/results/NAME.json (rows + machine) and NAME.csv (rows)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": meta, "rows": rows}, indent=1))
    if rows:
        with open(RESULTS / f"{name}.csv", "w", newline="") as handle:
            # rows may differ (an error row, a method without capacity): one column per key seen
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
    print(f"written: {RESULTS / name}.json, .csv")
