"""Start the Streamlit app with the heavy lifting done before the first visitor arrives.

``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` plus a background thread that
imports torch, zennit and scikit-learn, opens the bundled demo run and explains one image, so that
the first page view only draws. Without it (plain ``streamlit run app.py``) the app works the same,
its first view is just slower.
"""
import gc
import os
import sys
import threading
from pathlib import Path

from streamlit.web import cli


def warm_up():
    from ui.state import DEMO_RUN, DEMO_RUNS, preload
    preload(DEMO_RUN)
    preload(DEMO_RUNS / "finetune")       # the tour's first step
    # What exists now (torch, scikit-learn, the demo runs: ~450,000 objects) lives as long as the
    # server: moved out of the collector's sight, a full collection no longer walks it (0.2 s -> ~0).
    gc.freeze()


def main():
    # One intra-op thread per computation: a server answers several sessions (and a training) at
    # once, and torch's thread pools on every request would fight over the cores (measured: a
    # pathway under load took 65x longer with 2 threads than with 1). RERELRP_TORCH_THREADS overrides.
    import torch
    threads = os.environ.get("RERELRP_TORCH_THREADS", "1")
    if not threads.isdigit() or int(threads) < 1:
        sys.exit(f"RERELRP_TORCH_THREADS must be a whole number of at least 1, not {threads!r}.")
    torch.set_num_threads(int(threads))
    threading.Thread(target=warm_up, daemon=True, name="warm-up").start()
    app = str(Path(__file__).resolve().parent.parent / "app.py")
    sys.argv = ["streamlit", "run", app, *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
