"""The real app in a real headless Chromium: start the server, open it, upload an image, and see
the prediction, the heatmaps and the pathway figure appear."""
import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pytest

from ui.serve import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "samples" / "digit-7.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Chromium is not installed (scripts/setup.sh --browser installs it)")


@contextlib.contextmanager
def app_server(runs, **env):
    """``python -m ui.serve`` on a free port (``env``: extra environment), its URL once it is up."""
    port = free_port()
    env = {**os.environ, "RERELRP_RUNS": str(runs), **env}
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "--server.port", str(port), "--server.address",
                             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the Streamlit server did not come up")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_server(tmp_path_factory.mktemp("runs")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--disable-gpu", "--disable-background-networking",
                                                    "--disable-component-update", "--no-first-run"])
        yield chromium
        chromium.close()


def expected_prediction(path):
    """What the engine itself says about the image: [predicted class, recognised task]."""
    from rerelrp_core.explain import explain_image, prepare_upload
    from rerelrp_core.runs import load_run
    run = load_run(ROOT / "assets" / "demo-runs" / "rerelrp", device="cpu")
    result = explain_image(run, prepare_upload(run, path.read_bytes()))
    return [result["class_name"], f"task {result['task']}"]


def wait_until_idle(page):
    """Wait until Streamlit has finished the script run (its 'running' indicator is gone)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def test_upload_shows_prediction_heatmaps_and_pathways(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/explore")
    # the demo run, before any training
    page.get_by_text("Predicted class", exact=True).wait_for(timeout=90_000)
    wait_until_idle(page)
    page.get_by_text("Upload or sample", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(SAMPLE))
    started = time.time()
    page.get_by_text("What the model sees: digit-7.png").wait_for(timeout=60_000)
    wait_until_idle(page)
    print(f"upload to finished page: {time.time() - started:.2f} s")
    page.get_by_text("Pathway: from the input to the class, unit by unit").wait_for(timeout=10_000)
    shown = page.locator('[data-testid="stMain"] [data-testid="stMetricValue"]').all_inner_texts()
    assert shown == expected_prediction(SAMPLE), shown
    captions = page.locator('[data-testid="stImageCaption"]').all_text_contents()
    assert sum(c.startswith("task ") and ": " in c for c in captions) == 5, captions    # one per subnetwork
    assert page.locator(".js-plotly-plot").count() >= 2
    page.close()


def test_clicking_a_pathway_node_shows_its_conditional_heatmap(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/explore")
    page.get_by_text("Predicted class", exact=True).wait_for(timeout=90_000)
    wait_until_idle(page)
    graph = page.locator(".js-plotly-plot", has_text="click a class to explain it")
    graph.scroll_into_view_if_needed()
    assert page.get_by_text("sees — frozen by").count() == 0
    # the unit nodes are the square markers framed in a task's colour (one trace per owner)
    nodes = graph.locator(".scatterlayer .trace .points path")
    assert nodes.count() >= 6
    nodes.nth(2).click(force=True)
    heading = page.get_by_text("sees — frozen by task")
    heading.wait_for(timeout=30_000)
    wait_until_idle(page)
    assert page.get_by_text("through it alone").count() >= 1
    page.close()


def test_finished_training_is_listed_without_a_reload(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server}/train")
    page.get_by_role("button", name="Start training").wait_for(timeout=90_000)
    page.get_by_role("combobox", name="Data set").click()
    page.get_by_role("option", name="scikit-learn digits (8×8, fastest)").click()
    page.get_by_role("spinbutton", name="Tasks").fill("2")
    page.get_by_role("spinbutton", name="Max epochs per task").fill("1")
    page.get_by_role("textbox", name="Run name").fill("browser-run")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Finished and saved as browser-run").wait_for(timeout=120_000)
    # "Saved runs" below the live fragment lists it without the user reloading the page
    page.get_by_text("browser-run: digits, rerelrp, 2/2 tasks").wait_for(timeout=15_000)
    first = page.get_by_text("tasks finished").inner_text()
    page.wait_for_timeout(2_500)
    assert page.get_by_text("tasks finished").inner_text() == first     # the clock stopped
    page.close()


def test_the_tour_walks_from_first_step_to_last_with_a_figure_each(server, browser):
    from playwright.sync_api import expect
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(server)               # the tour is the page a newcomer lands on
    for step in range(1, 5):
        started = time.time()
        page.get_by_text(f"Step {step} of 4").wait_for(timeout=90_000 if step == 1 else 20_000)
        wait_until_idle(page)
        figures = page.locator('[data-testid="stMain"] .js-plotly-plot')
        figures.first.wait_for(timeout=20_000)
        assert figures.count() >= 1
        print(f"tour step {step}: {time.time() - started:.2f} s, {figures.count()} figure(s)")
        if step < 4:
            page.get_by_role("button", name="Next →").click()
    # the last step's button replaces the previous step's, which a quick rerun may still show for a
    # moment (a loaded machine once showed both): wait until only the disabled one is left
    expect(page.get_by_role("button", name="Next →", disabled=False)).to_have_count(0, timeout=20_000)
    expect(page.get_by_role("button", name="Next →", disabled=True)).to_have_count(1)
    page.close()


def test_a_link_straight_to_a_page_opens_it_inside_the_app(server, browser):
    """A shared link to /masking shows that page with the app's navigation and run picker (a folder
    named pages/ made Streamlit run the page file alone, without either)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{server}/masking")
    page.get_by_role("heading", name="Masking and ablation").wait_for(timeout=90_000)
    page.get_by_text("Run to explore").wait_for(timeout=20_000)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Tour" in nav and "Forgetting" in nav and "masking" not in nav, nav
    page.close()


def test_clicking_a_forgetting_cell_shows_its_lost_images(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/forgetting")
    page.get_by_text("Where the accuracy went").wait_for(timeout=90_000)
    wait_until_idle(page)
    matrix = page.locator(".js-plotly-plot", has_text="Task-agnostic accuracy (%)")
    matrix.scroll_into_view_if_needed()
    cells = matrix.locator(".scatterlayer .trace .points path")
    assert cells.count() == 15                        # one per cell of a 5-task matrix
    cells.nth(8).click(force=True)                    # after task 3, task 2
    sentence = page.locator("p", has_text="Task 2, task-agnostic:")
    sentence.wait_for(timeout=30_000)
    wait_until_idle(page)
    assert "after task 3" in sentence.inner_text()
    lost = int(sentence.inner_text().split(" lost")[0].split()[-1])
    assert page.get_by_role("tab", name=f"Lost ({lost})").count() == 1
    captions = page.locator('[data-testid="stImageCaption"]').all_text_contents()
    assert sum(c.startswith("#") and "→" in c for c in captions) >= min(lost, 1)
    page.close()


def test_a_copied_link_opens_the_same_view_in_a_fresh_browser(server, browser):
    from playwright.sync_api import expect
    first = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = first.new_page()
    page.goto(f"{server}/explore")
    page.get_by_text("Predicted class", exact=True).wait_for(timeout=90_000)
    wait_until_idle(page)
    graph = page.locator(".js-plotly-plot", has_text="click a class to explain it")
    graph.scroll_into_view_if_needed()
    graph.locator(".scatterlayer .trace .points path").nth(3).click(force=True)
    heading = page.get_by_text("sees — frozen by task")
    heading.wait_for(timeout=30_000)
    wait_until_idle(page)
    link = page.locator('[data-testid="stSidebar"] [data-testid="stCode"]').inner_text().strip()
    assert link.startswith(server) and "unit=" in link, link
    assert unquote(page.url) == unquote(link)       # the address bar holds the same link
    metrics = '[data-testid="stMain"] [data-testid="stMetricValue"]'
    shown = (heading.inner_text(), page.locator(metrics).all_inner_texts())
    second = browser.new_context(viewport={"width": 1400, "height": 2400})     # no shared session
    other = second.new_page()
    other.goto(link)
    other.get_by_text("Predicted class", exact=True).wait_for(timeout=90_000)
    other.get_by_text("sees — frozen by task").wait_for(timeout=90_000)
    wait_until_idle(other)
    expect(other.locator(metrics)).to_have_count(len(shown[1]))
    again = (other.get_by_text("sees — frozen by task").inner_text(),
             other.locator(metrics).all_inner_texts())
    assert again == shown
    first.close()
    second.close()


def test_two_server_processes_keep_each_browser_on_its_own(tmp_path, browser):
    """RERELRP_WORKERS=2: two browsers are shared out over the two processes, and everything one
    browser does (here an upload, which only its own process can take) reaches its process."""
    with app_server(tmp_path, RERELRP_WORKERS="2") as url:
        pages, workers = [], []
        for _ in range(2):
            context = browser.new_context(viewport={"width": 1400, "height": 2400})
            page = context.new_page()
            page.goto(f"{url}/explore")
            page.get_by_text("Predicted class", exact=True).wait_for(timeout=120_000)
            wait_until_idle(page)
            workers.append(next(c["value"] for c in context.cookies() if c["name"] == "rerelrp_worker"))
            pages.append(page)
        assert sorted(workers) == ["0", "1"]
        for page in pages:
            page.get_by_text("Upload or sample", exact=True).click()
            page.locator("input[type=file]").set_input_files(str(SAMPLE))
            page.get_by_text("What the model sees: digit-7.png").wait_for(timeout=60_000)
            wait_until_idle(page)
            shown = page.locator('[data-testid="stMain"] [data-testid="stMetricValue"]').all_inner_texts()
            assert shown == expected_prediction(SAMPLE), shown
            page.context.close()
