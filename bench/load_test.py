"""Load test on loopback: N browser sessions open the Explore page of a running app while one
more session trains a run; reports the server-side time of every Explore rerun (p50/p95: the
page script's own time on the server, without the browser's drawing), the time to a fully drawn
page in the browsers, errors and the server's memory.

    RERELRP_TIMINGS=/tmp/reruns.jsonl .venv/bin/python -m ui.serve --server.port 8501 &
    .venv/bin/python bench/load_test.py --url http://127.0.0.1:8501 --sessions 8 --rounds 3 \
        --timings /tmp/reruns.jsonl

Bounded: sessions x rounds page loads, each with a 120 s limit; only 127.0.0.1/localhost URLs.
Needs Chromium (scripts/setup.sh --browser).
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
    """Resident memory of the process listening on ``port`` (via ss/ps), or None."""
    try:
        out = subprocess.run(["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
        pid = out.split("pid=")[1].split(",")[0]
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
    except (IndexError, OSError, StopIteration, ValueError):
        return None


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
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="no training session alongside")
    parser.add_argument("--timings", help="the server's RERELRP_TIMINGS file (server-side rerun times)")
    args = parser.parse_args()
    if urlparse(args.url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit("load_test.py only targets a server on this machine (127.0.0.1 or localhost).")
    if not 1 <= args.sessions <= 32 or not 1 <= args.rounds <= 20:
        sys.exit("keep --sessions in 1..32 and --rounds in 1..20")
    skip = len(server_reruns(args.timings)) if args.timings else 0    # reruns before this test
    latencies, errors, memory, elapsed = asyncio.run(main_async(args))
    explore = [r["seconds"] for r in server_reruns(args.timings)[skip:] if r["page"] == "Explore"]
    result = {"sessions": args.sessions, "rounds": args.rounds, "training_alongside": args.train,
              "page_loads": len(latencies) + len(errors), "errors": errors,
              "server_explore_reruns": len(explore), **percentiles(explore, "server_explore_"),
              **percentiles(latencies, "browser_page_"), "elapsed_s": round(elapsed, 1),
              "server_rss_mb": [round(m) if m else None for m in memory], "machine": machine("cpu")}
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load-test.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
