"""Plain-number summaries of saved runs that several pages show (pages only draw them)."""
import streamlit as st

from rerelrp_core.errors import UserError
from ui.state import available_runs, open_run


def kept_by_kind(metrics):
    """{kind: kB} a run keeps besides the network after its last task (kB = 1000 bytes)."""
    parts = metrics["stored_parts_per_task"]
    kinds = dict.fromkeys(k for p in parts for k in p)
    return {kind: sum(p.get(kind, 0) for p in parts) / 1e3 for kind in kinds}


def stored_summary(name, metrics):
    """One row of the cost table: final accuracies and the bytes kept, in kB, by kind."""
    kinds = kept_by_kind(metrics)
    return {"run": name, "final TAg (%)": round(metrics["avg_acc_tag"][-1], 2),
            "final TAw (%)": round(metrics["avg_acc_taw"][-1], 2),
            "kept (kB)": round(sum(metrics["stored_bytes_per_task"]) / 1e3, 1),
            **{f"{kind} (kB)": round(value, 1) for kind, value in kinds.items()}}


def same_split_runs(run):
    """Every listed run (demo and saved) with at least one task on ``run``'s data set and split, as
    (label, SharedRun) pairs, the run itself first; runs that cannot be opened are left out."""
    found = []
    for entry in available_runs():
        try:
            shared = open_run(entry["path"])
        except UserError:
            continue
        other = shared.run
        if other.dataset == run.dataset and vars(other.split) == vars(run.split) and other.tasks_done:
            label = f"{other.config.method} ({'demo ' if entry['demo'] else ''}{entry['name']})"
            found.append((label, shared, str(entry["path"]) == st.session_state.get("run_path")))
    found.sort(key=lambda item: not item[2])          # stable: the run itself first, then as listed
    return [(label, shared) for label, shared, _ in found]
