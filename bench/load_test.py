"""Load test on loopback: N sessions open the Explore page of a running app while one more
session trains a run; reports the server-side time of every Explore rerun (p50/p95: the page
script's own time on the server, without the browser's drawing), the time each client waited for
its page, errors and the server's memory.

    RERELRP_TIMINGS=/tmp/reruns.jsonl .venv/bin/python -m ui.serve --server.port 8501 &
    .venv/bin/python bench/load_test.py --url http://127.0.0.1:8501 --sessions 8 --rounds 3 \
        --timings /tmp/reruns.jsonl
    .venv/bin/python bench/load_test.py --clients 30 --link "explore?run=demo:rerelrp&..." \
        --timings /tmp/reruns.jsonl

``--sessions N``: N headless Chromium pages (the whole browser, drawing included; on 2 cores the
renderers take most of the CPU). ``--clients N``: N clients that speak Streamlit's own websocket
protocol, as a browser tab does, without drawing: every round all N ask for the same link at the
same instant (a class following a shared link) and each waits for the server to say the script
finished; the first round opens the sessions. The training alongside is one Chromium page on the
Train page either way.

Bounded: sessions x rounds page loads, each with a 120 s limit; only 127.0.0.1/localhost URLs.
Needs Chromium (scripts/setup.sh --browser) for --sessions and the training.
"""
import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RESULTS, machine  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def server_rss_mb(port):
    """Resident memory of the process listening on ``port`` and its children (the app's processes
    behind a RERELRP_WORKERS front), via ss and /proc, or None."""
    try:
        out = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
        pid = int(out.split("pid=")[1].split(",")[0])
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(p) == pid]
        return sum(_rss_kb(p) for p in [pid, *children]) / 1024
    except (IndexError, OSError, StopIteration, ValueError):
        return None


def _parent(proc):
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _rss_kb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


async def explore_once(browser, url, latencies, errors):
    page = await browser.new_page()
    started = time.perf_counter()
    try:
        await page.goto(url, timeout=120_000)
        await page.get_by_text("Recognised task", exact=True).wait_for(timeout=120_000)
        graph = page.locator(".js-plotly-plot", has_text="click a class to explain it")
        await graph.wait_for(timeout=120_000)
        latencies.append(time.perf_counter() - started)
        if await page.locator('[data-testid="stException"]').count():
            errors.append("exception shown on the page")
    except Exception as error:  # a timeout or a crash is a failed request, counted and reported
        errors.append(f"{type(error).__name__}: {str(error)[:120]}")
    finally:
        await page.close()


async def train_in_background(browser, url):
    page = await browser.new_page()
    await page.goto(f"{url}/train", timeout=120_000)
    button = page.get_by_role("button", name="Start training")
    await button.wait_for(timeout=120_000)
    await button.click()
    await page.get_by_text("tasks finished").wait_for(timeout=120_000)
    return page


async def main_async(args):
    from playwright.async_api import async_playwright
    latencies, errors = [], []
    port = urlparse(args.url).port or 80
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--disable-gpu", "--disable-background-networking"])
        trainer = await train_in_background(browser, args.url) if args.train else None
        memory = [server_rss_mb(port)]
        started = time.perf_counter()
        for _ in range(args.rounds):
            await asyncio.gather(*[explore_once(browser, args.url, latencies, errors)
                                   for _ in range(args.sessions)])
            memory.append(server_rss_mb(port))
        elapsed = time.perf_counter() - started
        if trainer is not None:
            await trainer.close()
        await browser.close()
    return latencies, errors, memory, elapsed


async def client_session(url, link, rounds, start, waited, errors):
    """One tab following ``link`` (page path and query): ``rounds`` reruns of it, each started
    together with every other client's (``start``: one barrier per round)."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    page, _, query = link.partition("?")
    stream = url.replace("http://", "ws://", 1).rstrip("/") + "/_stcore/stream"
    async with websockets.connect(stream, subprotocols=["streamlit"], max_size=None,
                                  open_timeout=120) as socket:
        for round_number in range(rounds):
            await start[round_number].wait()
            request = BackMsg()
            request.rerun_script.query_string = query
            request.rerun_script.page_name = page
            started = time.perf_counter()
            await socket.send(request.SerializeToString())
            while True:
                message = ForwardMsg()
                message.ParseFromString(await asyncio.wait_for(socket.recv(), 120))
                kind = message.WhichOneof("type")
                element = message.delta.new_element
                if kind == "delta" and element.WhichOneof("type") == "exception":
                    errors.append(f"exception on the page: {element.exception.message[:120]}")
                if kind == "script_finished":
                    break
            waited[round_number].append(time.perf_counter() - started)


async def clients_async(args):
    """``args.clients`` websocket clients on one link, all rounds at once; a training alongside."""
    from playwright.async_api import async_playwright
    waited, errors = [[] for _ in range(args.rounds)], []
    port = urlparse(args.url).port or 80
    start = [asyncio.Event() for _ in range(args.rounds)]
    async with async_playwright() as playwright:
        trainer = None
        if args.train:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                       args=["--disable-gpu"])
            trainer = await train_in_background(browser, args.url)
        memory = [server_rss_mb(port)]
        started = time.perf_counter()
        tasks = [asyncio.create_task(client_session(args.url, args.link, args.rounds, start, waited, errors))
                 for _ in range(args.clients)]
        for round_number in range(args.rounds):
            await asyncio.sleep(0.5)                 # every client connected and idle
            start[round_number].set()
            while len(waited[round_number]) < args.clients and not all(t.done() for t in tasks):
                await asyncio.sleep(0.05)
            memory.append(server_rss_mb(port))
        for task in tasks:
            try:
                await task
            except Exception as error:  # a timeout or a dropped socket is a failed client, counted
                errors.append(f"{type(error).__name__}: {str(error)[:120]}")
        elapsed = time.perf_counter() - started
        if trainer is not None:
            await browser.close()
    return waited, errors, memory, elapsed


def server_reruns(path):
    """The rerun records the server wrote to its RERELRP_TIMINGS file (see ui/timing.py)."""
    lines = Path(path).read_text().splitlines() if Path(path).exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def percentiles(values, prefix):
    """p50, p95 and max of ``values`` in seconds, keyed with ``prefix``."""
    ordered = sorted(values)
    if not ordered:
        return {f"{prefix}p50_s": None, f"{prefix}p95_s": None, f"{prefix}max_s": None}
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {f"{prefix}p50_s": round(statistics.median(ordered), 3), f"{prefix}p95_s": round(p95, 3),
            f"{prefix}max_s": round(ordered[-1], 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument("--sessions", type=int, default=8, help="Chromium pages")
    parser.add_argument("--clients", type=int, help="websocket clients on --link instead of Chromium pages")
    parser.add_argument("--link", default="explore?run=demo:rerelrp&image=test:1:0&subnetwork=1&unit=conv2/1",
                        help="the view the --clients follow: page path and query, as in the app's links")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="no training session alongside")
    parser.add_argument("--timings", help="the server's RERELRP_TIMINGS file (server-side rerun times)")
    args = parser.parse_args()
    if urlparse(args.url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit("load_test.py only targets a server on this machine (127.0.0.1 or localhost).")
    if not 1 <= args.sessions <= 32 or not 1 <= (args.clients or 1) <= 64 or not 1 <= args.rounds <= 20:
        sys.exit("keep --sessions in 1..32, --clients in 1..64 and --rounds in 1..20")
    skip = len(server_reruns(args.timings)) if args.timings else 0    # reruns before this test
    if args.clients:
        waited, errors, memory, elapsed = asyncio.run(clients_async(args))
        result = {"clients": args.clients, "link": args.link, **client_figures(waited)}
        name = "load-test-clients"
    else:
        latencies, errors, memory, elapsed = asyncio.run(main_async(args))
        result = {"sessions": args.sessions, "page_loads": len(latencies) + len(errors),
                  **percentiles(latencies, "browser_page_")}
        name = "load-test"
    explore = [r["seconds"] for r in server_reruns(args.timings)[skip:] if r["page"] == "Explore"]
    if args.clients:     # rounds run one after the other: the first round's reruns come first
        result.update(percentiles(explore[args.clients:], "server_rerun_"))
    result.update({"rounds": args.rounds, "training_alongside": args.train, "errors": errors,
                   "server_explore_reruns": len(explore), **percentiles(explore, "server_explore_"),
                   "elapsed_s": round(elapsed, 1), "server_rss_mb": [round(m) if m else None for m in memory],
                   "machine": machine("cpu")})
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    if errors:      # timings of broken pages measure nothing
        sys.exit(f"{len(errors)} of the page loads failed; the first: {errors[0]}")


def client_figures(waited):
    """Time each client waited for its page: the first round (sessions opening) apart from the rest."""
    later = [seconds for round_times in waited[1:] for seconds in round_times]
    return {**percentiles(waited[0], "client_first_view_"), **percentiles(later, "client_rerun_")}


if __name__ == "__main__":
    main()
