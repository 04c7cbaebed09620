"""Every engine module can be the first one a library user imports (no import cycles)."""
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "rerelrp_core").glob("*.py")
                 if p.stem not in ("__init__", "__main__"))


def test_every_module_imports_first():
    saved = {name: module for name, module in sys.modules.items() if name.startswith("rerelrp_core")}
    failed = {}
    try:
        for module in MODULES:
            for name in [n for n in sys.modules if n.startswith("rerelrp_core")]:
                del sys.modules[name]                   # a fresh engine; torch and the rest stay loaded
            try:
                importlib.import_module(f"rerelrp_core.{module}")
            except ImportError as error:
                failed[module] = str(error)
    finally:
        for name in [n for n in sys.modules if n.startswith("rerelrp_core")]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert not failed, failed
