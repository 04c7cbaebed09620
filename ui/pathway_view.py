"""What the pathway graph draws, as plain numbers and labels, built from the engine's Pathway.

Pages call :func:`graph_view` and hand the result to :func:`ui.figures.pathway_graph`; labels are
made here (the engine returns integers), so the engine never formats text for the UI.
"""
import numpy as np

from rerelrp_core.pathways import INPUT
from ui import figures


def node_key(layer, unit, n_layers):
    """The graph's key of an Edge end: the input, a unit (layer, unit) or a class."""
    if layer == INPUT:
        return ("input", 0)
    return (figures.CLASS_NODE, unit) if layer == n_layers else (layer, unit)


def graph_view(run, pathway, x, class_probs, other=None, selected=None):
    """The dict :func:`ui.figures.pathway_graph` draws.

    class_probs: {global row: probability within the task}; other: None or (task, kept masks) of a
    subnetwork to overlay; selected: the clicked (layer, unit) or None."""
    n_layers = len(pathway.layers)
    task = run.tasks[pathway.task]
    image = x[0].numpy()
    layers = [_layer_view(i, layer, image) for i, layer in enumerate(pathway.layers) if layer.shown]
    edges = [{"lower": node_key(e.lower, e.lower_unit, n_layers),
              "upper": node_key(e.upper, e.upper_unit, n_layers),
              "flow": e.relevance, "gap": e.lower} for e in pathway.edges]
    classes = [{"row": int(row), "name": task.class_names[int(row) - task.offset], "p": class_probs[int(row)],
                "logit": float(pathway.logits[int(row) - task.offset]),
                "explained": int(row) == pathway.target}
               for row in task_rows_explained_first(pathway)]
    explained = task.class_names[pathway.target - task.offset]
    return {"title": f"Why “{explained}”? This input through <b>task {task.index}</b>'s subnetwork",
            "task": task.index, "layers": layers, "edges": edges, "classes": classes,
            "input_png": figures.grey_png(image),
            "heatmap_png": figures.heat_png(pathway.heatmap, image=image),
            "heatmap_total": float(pathway.heatmap.sum()), "selected": selected, "legend_done": set(),
            "other": None if other is None else {"task": other[0], "kept": other[1]},
            "has_masks": run.learner.ownership is not None}


def class_probabilities(pathway):
    """{global row: softmax probability among the task's classes} from the pathway's logits."""
    logits = pathway.logits - pathway.logits.max()
    probs = np.exp(logits) / np.exp(logits).sum()
    return {int(row): float(p) for row, p in zip(pathway.task_rows, probs)}


def task_rows_explained_first(pathway):
    rows = [int(r) for r in pathway.task_rows]
    return [pathway.target] + [r for r in rows if r != pathway.target]


def _layer_view(i, layer, image):
    magnitude = np.abs(layer.relevance)
    total = magnitude[layer.kept].sum() or 1.0
    top = [int(u) for u in layer.top]
    covered = magnitude[top].sum() / total
    return {"index": i, "name": layer.name, "top": top, "owner": layer.owner, "relevance": layer.relevance,
            "share": magnitude / total, "pngs": [figures.heat_png(h, image=image) for h in layer.heatmaps],
            "caption": f"top {len(top)} of {int(layer.kept.sum())} units · {covered:.0%} of |R|"}
