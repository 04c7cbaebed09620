"""A run's HTML report: one self-contained file with its metrics and figures."""
import re

from rerelrp_core.runs import load_run
from ui.report import run_report
from ui.state import DEMO_RUNS


def test_report_of_a_demo_run_is_self_contained_and_complete():
    run = load_run(DEMO_RUNS / "rerelrp", device="cpu")
    page = run_report(run, "rerelrp <demo>")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "rerelrp &lt;demo&gt;" in page and "<demo>" not in page          # names are escaped
    # plotly's JavaScript is embedded once; nothing is fetched from elsewhere
    assert page.count("plotly.js v") >= 1 and not re.search(r"<script[^>]+src=", page)
    for title in ("Task-aware accuracy (%)", "Task-agnostic accuracy (%)", "Average accuracy after each task",
                  "What each method keeps besides the network", "Reuse: what each task",
                  "Free units per layer"):
        assert title in page, title
    m = run.metrics
    assert f"{m['avg_acc_tag'][-1]:.2f}%" in page and f"{m['avg_acc_taw'][-1]:.2f}%" in page
    assert f"{m['forgetting_taw']:.2f}" in page


def test_report_of_a_method_without_masks_leaves_out_capacity():
    run = load_run(DEMO_RUNS / "finetune", device="cpu")
    page = run_report(run, "finetune")
    assert "Reuse: what each task" not in page and "Task-agnostic accuracy (%)" in page
