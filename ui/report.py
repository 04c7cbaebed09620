"""Share a run: one self-contained HTML file with its metrics and the app's figures of it.

Everything comes from what the run stores (metrics, masks), so a report can be made for a run whose
data set is not on this machine. plotly's own HTML export draws the figures; its JavaScript is
embedded once, so the file opens offline in any browser.
"""
import html

from rerelrp_core.explain import ownership_shares, reuse_matrix
from ui import figures
from ui.glossary import TERMS
from ui.summaries import kept_by_kind, stored_summary

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{text-align:left;padding:.3em .8em;border-bottom:1px solid #ddd}
.why{color:#666;font-size:.9em}.settings{color:#555;font-size:.85em}.chart{margin:1.5em 0}"""


def run_figures(run, name):
    """The run's figures, as the pages draw them (those its method has)."""
    m = run.metrics
    found = [figures.accuracy_matrix(m["acc_taw"], "Task-aware accuracy (%)"),
             figures.accuracy_matrix(m["acc_tag"], "Task-agnostic accuracy (%)"),
             figures.curves({"TAw": m["avg_acc_taw"], "TAg": m["avg_acc_tag"]},
                            "Average accuracy after each task"),
             figures.memory_card([stored_summary(name, m)])]
    if run.learner.ownership is not None:
        found.append(figures.stacked_shares(ownership_shares(run), "Units owned per task and free, per layer",
                                            "share of units"))
        found.append(figures.reuse_matrix(reuse_matrix(run)))
    if m.get("capacity"):
        steps = m["capacity"]
        found.append(figures.curves({layer: [100 * step[layer] for step in steps] for layer in steps[0]},
                                    "Free units per layer after each task", "free units (%)"))
    return found


def summary_rows(run):
    """(label, value, explanation) rows of the report's metrics table."""
    m = run.metrics
    rows = [("Final average TAw", f"{m['avg_acc_taw'][-1]:.2f}%", TERMS["TAw"]),
            ("Final average TAg", f"{m['avg_acc_tag'][-1]:.2f}%", TERMS["TAg"]),
            ("TAw forgetting", f"{m['forgetting_taw']:.2f}", TERMS["forgetting"]),
            ("TAg forgetting", f"{m['forgetting_tag']:.2f}", ""),
            ("BWT TAw / TAg", f"{m['bwt_taw']:.2f} / {m['bwt_tag']:.2f}", TERMS["BWT"])]
    if "task_recognition_acc" in m:
        rows.append(("Task recognition", f"{m['task_recognition_acc']:.1f}%",
                     "how often the recognised task is the true one"))
    rows.append(("Kept besides the network", f"{sum(m['stored_bytes_per_task']) / 1e3:,.1f} kB",
                 ", ".join(f"{kind} {kb:,.1f} kB" for kind, kb in kept_by_kind(m).items())))
    timing = m.get("timing_s", {})
    rows.append(("Time", " · ".join(f"{k} {v:.0f} s" for k, v in timing.items()),
                 "on the machine that trained it"))
    return rows


def run_report(run, name):
    """The HTML report of ``run`` (saved as ``name``), as one string."""
    config = run.config.to_dict()
    table = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td>"
                    f"<td class=why>{html.escape(why)}</td></tr>" for label, value, why in summary_rows(run))
    settings = ", ".join(f"{html.escape(k)} = {html.escape(repr(v))}" for k, v in config.items())
    charts = "".join(f"<div class=chart>{fig.to_html(full_html=False, include_plotlyjs=i == 0)}</div>"
                     for i, fig in enumerate(run_figures(run, name)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ReReLRP Explorer report: {html.escape(name)}</title>
<style>{STYLE}</style></head>
<body><h1>Run {html.escape(name)}</h1>
<p>{html.escape(run.dataset)} · {html.escape(run.config.method)} · {html.escape(run.config.arch)} ·
{run.tasks_done} of {run.split.n_tasks} task(s) · classes per task:
{html.escape(", ".join("/".join(t.class_names) for t in run.tasks[:run.tasks_done]))}</p>
<table>{table}</table>
<p class=settings>Settings: {settings}</p>
{charts}
<p class=settings>Made with ReReLRP Explorer (arXiv 2502.10789).</p></body></html>"""
