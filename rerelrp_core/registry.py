"""The folder of saved runs: list, rename, delete, and pack one as a zip for download."""
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

from .errors import UserError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def list_runs(root):
    """Saved runs under ``root`` (folders with a run.json), newest first, as dicts with
    ``name``, ``path``, ``label``."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    for folder in root.iterdir():
        meta = folder / "run.json"
        if folder.is_dir() and not folder.name.startswith(".") and meta.is_file():
            mtime = meta.stat().st_mtime
            entries.append({"name": folder.name, "path": folder, "label": _label(meta, mtime),
                            "mtime": mtime})
    return sorted(entries, key=lambda e: -e["mtime"])


_LABELS = {}      # run.json path -> (its mtime, its label): the app lists the runs on every rerun


def _label(meta, mtime):
    known = _LABELS.get(meta)
    if known is not None and known[0] == mtime:
        return known[1]
    name = meta.parent.name
    try:
        state = json.loads(meta.read_text())
        label = (f"{name}: {state['dataset']}, {state['config']['method']}, "
                 f"{len(state['history']['acc_taw'])}/{len(state['tasks'])} tasks")
    except (ValueError, KeyError, TypeError):
        label = f"{name}: (damaged run.json)"
    _LABELS[meta] = (mtime, label)
    return label


def check_name(name):
    if not NAME.match(name or ""):
        raise UserError("A run name uses letters, digits, '.', '_' or '-' (up to 64, starting with a letter "
                        "or digit).")
    return name


def rename_run(root, old, new):
    source, target = Path(root) / check_name(old), Path(root) / check_name(new)
    if not (source / "run.json").is_file():
        raise UserError(f"There is no run named '{old}'.")
    if target.exists():
        raise UserError(f"A run named '{new}' already exists.")
    source.rename(target)
    return target


def delete_run(root, name):
    folder = Path(root) / check_name(name)
    if not (folder / "run.json").is_file():
        raise UserError(f"There is no run named '{name}'.")
    shutil.rmtree(folder)


def run_zip(folder):
    """The run folder's files as zip bytes (for download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(Path(folder).iterdir()):
            if file.is_file():
                archive.write(file, f"{Path(folder).name}/{file.name}")
    return buffer.getvalue()
