"""Server-side time of every page rerun, for the load benchmark (bench/load_test.py).

Off unless the server was started with ``RERELRP_TIMINGS=FILE``: then every rerun appends one JSON
line ``{"page": ..., "seconds": ...}`` to FILE (the script's own time on the server, not the
browser's drawing).
"""
import json
import os
import threading
import time
from contextlib import contextmanager

_LOCK = threading.Lock()


@contextmanager
def timed_rerun(page):
    path = os.environ.get("RERELRP_TIMINGS")
    started = time.perf_counter()
    try:
        yield
    finally:
        if path:
            line = json.dumps({"page": page, "seconds": round(time.perf_counter() - started, 4)})
            with _LOCK, open(path, "a") as handle:
                handle.write(line + "\n")
