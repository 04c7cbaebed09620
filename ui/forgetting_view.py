"""Drawing blocks of the Forgetting page: grids of the images behind a number, and one image's
"why" (what it was taken for, and what moved inside the network)."""
import csv
import io

import pandas as pd
import streamlit as st

from rerelrp_core.errors import UserError
from ui import figures
from ui.state import explanation, what_moved

GRID = 40       # thumbnails drawn per grid (the table below it lists every image)


def download_figure(column, fig, name, key):
    """A button that downloads ``fig`` as a self-contained HTML file (made only when clicked)."""
    column.download_button("Figure as HTML", lambda: fig.to_html(include_plotlyjs=True),
                           file_name=f"{name}.html", mime="text/html", key=key, on_click="ignore")


def csv_text(rows):
    """``rows`` (dicts with the same keys) as CSV text."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def image_grid(tasks, rows, key, caption):
    """Thumbnails of the images in ``rows`` (dicts with ``task`` and ``index``, first :data:`GRID`)
    captioned by ``caption(row)``, then every row as a table; returns the row picked in the table
    (the first one until another is picked), or None when there are none."""
    if not rows:
        st.caption("No images.")
        return None
    shown = rows[:GRID]
    st.image([figures.image_png(tasks[r["task"]].x_test[r["index"]].numpy(), scale=3) for r in shown],
             caption=[caption(r) for r in shown], width=84)
    if len(rows) > GRID:
        st.caption(f"The first {GRID} of {len(rows)} images; the table lists them all.")
    event = st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=220,
                         on_select="rerun", selection_mode="single-row", key=f"{key}-table")
    picked = (event or {}).get("selection", {}).get("rows", [])
    return rows[picked[0]] if picked and picked[0] < len(rows) else rows[0]


def open_on_explore(column, task, index, key):
    """A button that opens test image ``index`` of ``task`` on the Explore page."""
    def go():
        st.session_state["explore_pick"] = ("test", task, index)
        st.session_state["explore_run"] = st.session_state.get("run_path")
        for name in ("explore_unit", "explore_target", "explore_subnetwork", "explore_overlay"):
            st.session_state.pop(name, None)
    if column.button("Open on Explore", key=key, on_click=go, help="Its pathway and heatmaps, unit by unit."):
        st.switch_page("views/explore.py")


def why_recognised(shared, run, x, step):
    """For a method that recognises tasks: the probability each task got and its nearest class."""
    if not run.learner.can_recognise():
        return
    found = explanation(shared, x)
    why = [row for row in found["recognisers"] if row.get("task", 0) <= step]
    if why and "class" in why[0]:
        st.markdown("**Why that task** (each task's nearest class; the nearest one wins). A task's classes "
                    "keep their statistics once it is learnt, so these distances are what they were after "
                    "every step since.")
        st.dataframe(pd.DataFrame([{"task": r["task"], "nearest class": r["class"],
                                    "distance": round(r["distance"], 2)} for r in why]),
                     hide_index=True, width="content")
    if step == run.tasks_done - 1 and found["task_probs"] is not None:
        labels = [f"task {t}" for t in range(run.tasks_done)]
        st.plotly_chart(figures.probabilities(labels, found["task_probs"], "Recognition, after the last task",
                                              highlight=found["task"]), width="stretch")


def what_moved_view(shared, run, x, task, target_row, step):
    """Heatmaps right after ``task`` and after ``step``, their difference, the units whose relevance
    changed most and how far each layer's weights moved (needs per-task snapshots)."""
    if step == task:
        return
    if not run.snapshots:
        st.caption("This run kept no per-task weight snapshots, so what moved inside it cannot be shown "
                   "(runs trained on the Train page keep them).")
        return
    try:
        moved = what_moved(shared, x, task, target_row, step)
    except UserError as error:
        st.warning(str(error))
        return
    through = f"task {task}'s frozen subnetwork" if run.learner.ownership is not None else "the whole network"
    st.markdown(f"**What moved inside the network** for this image, through {through}")
    titles = [f"after task {task}", f"after task {step}", "difference"]
    maps = [moved["then"], moved["now"], moved["difference"]]
    st.plotly_chart(figures.heatmaps(maps, titles, x[0].numpy()), width="stretch")
    left, right = st.columns(2)
    if moved["units"]:
        left.markdown("Units whose relevance for it changed most (share of their layer)")
        left.dataframe(pd.DataFrame(moved["units"]).round(4), hide_index=True, width="stretch")
    else:
        left.success("No unit's relevance for this image changed: the units it goes through are frozen.")
    right.plotly_chart(figures.weight_movement(moved["layers"]), width="stretch")
