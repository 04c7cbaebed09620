"""Start the Streamlit app with the heavy lifting done before the first visitor arrives.

``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` plus a background thread that
imports torch, zennit and scikit-learn, opens the bundled demo run and explains one image, so that
the first page view only draws. Without it (plain ``streamlit run app.py``) the app works the same,
its first view is just slower.

``RERELRP_WORKERS=N`` (N > 1) runs N such servers on free local ports behind a sticky front on the
address and port asked for (ui/balancer.py): a class opening one link at once is shared out over
N processes, each using a core. Each process keeps its own caches (the first view of an image is
computed once per process) and costs its own memory (about 0.6 GB).
"""
import asyncio
import gc
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from streamlit.web import cli


def warm_up():
    from ui.state import DEMO_RUN, DEMO_RUNS, preload
    preload(DEMO_RUN)
    preload(DEMO_RUNS / "finetune")       # the tour's first step
    # What exists now (torch, scikit-learn, the demo runs: ~450,000 objects) lives as long as the
    # server: moved out of the collector's sight, a full collection no longer walks it (0.2 s -> ~0).
    gc.freeze()


def option(args, name, default):
    """The value of streamlit option ``name`` in ``args`` (``--name value`` or ``--name=value``)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def without(args, *names):
    """``args`` without the options ``names`` and their values."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not any(arg.startswith(name + "=") for name in names):
            kept.append(arg)
    return kept


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port, process, limit=180):
    """Wait until the server process listens on ``port``; exit when it died or never did."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"An app server process stopped before it started (exit status {process.returncode}).")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"An app server process did not listen on port {port} within {limit} s.")


def serve_workers(count, args):
    """``count`` app servers on free local ports and the sticky front on the address asked for."""
    from ui.balancer import serve
    address, port = option(args, "--server.address", "127.0.0.1"), int(option(args, "--server.port", "8501"))
    own = without(args, "--server.address", "--server.port")
    ports = [free_port() for _ in range(count)]
    env = {"STREAMLIT_SERVER_COOKIE_SECRET": secrets.token_hex(16),     # one XSRF secret for all
           **os.environ, "RERELRP_WORKERS": "1"}
    processes = [subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.address", "127.0.0.1",
                                   "--server.port", str(p), *own], env=env)
                 for p in ports]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))      # stop the processes too
    try:
        for p, process in zip(ports, processes):
            wait_listening(p, process)
        print(f"{count} app server processes behind http://{address}:{port}", flush=True)
        asyncio.run(serve(address, port, ports))
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def main():
    workers = os.environ.get("RERELRP_WORKERS", "1")
    if not workers.isdigit() or int(workers) < 1:
        sys.exit(f"RERELRP_WORKERS must be a whole number of at least 1, not {workers!r}.")
    if int(workers) > 1:
        return serve_workers(int(workers), sys.argv[1:])
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
