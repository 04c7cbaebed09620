"""Plotly figures built from plain numbers returned by rerelrp_core (no model access here)."""
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TASK_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                "#bcbd22", "#7f7f7f"]
FREE_COLOUR = "#c8c8c8"


def task_colour(task):
    return FREE_COLOUR if task < 0 else TASK_COLOURS[task % len(TASK_COLOURS)]


def accuracy_matrix(matrix, title):
    """Row t = after task t, column k = task k; empty above the diagonal."""
    n = len(matrix)
    z = np.full((n, n), np.nan)
    for t, row in enumerate(matrix):
        z[t, :len(row)] = row
    text = [[f"{v:.1f}" if not np.isnan(v) else "" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[f"task {k}" for k in range(n)], y=[f"after task {t}" for t in range(n)],
                               text=text, texttemplate="%{text}", zmin=0, zmax=100, colorscale="Viridis",
                               hovertemplate="%{y}, %{x}: %{z:.2f}%<extra></extra>"))
    fig.update_layout(title=title, yaxis_autorange="reversed", height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def curves(series, title, y_title="average accuracy (%)"):
    """One line per name in ``series`` (name -> values per step)."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="after task", xaxis_dtick=1, yaxis_title=y_title, yaxis_range=[0, 101],
                      height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def image(array, scale=8):
    """What the model sees, as a Pillow image upscaled without smoothing (a grey (1, H, W) or colour
    (3, H, W) array in [0, 1])."""
    from PIL import Image
    array = np.asarray(array)
    pixels = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def heatmaps(maps, titles):
    """LRP heatmaps side by side (red = evidence for, blue = against), one colour scale each."""
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=titles, horizontal_spacing=0.02)
    for i, heat in enumerate(maps):
        bound = float(np.abs(heat).max()) or 1.0
        fig.add_trace(go.Heatmap(z=heat, colorscale="RdBu_r", zmin=-bound, zmax=bound, showscale=False,
                                 hovertemplate="x %{x}, y %{y}: relevance %{z:.4f}<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i + 1}", visible=False, row=1, col=i + 1)
        fig.update_xaxes(visible=False, row=1, col=i + 1)
    fig.update_layout(height=260, margin=dict(l=5, r=5, t=40, b=5))
    return fig


def probabilities(labels, values, title, highlight=None):
    colours = [task_colour(i) if highlight is None or i == highlight else FREE_COLOUR for i in range(len(values))]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colours, text=[f"{v:.2f}" for v in values],
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, yaxis_range=[0, 1], height=280, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def pathways(layer_names, owners, relevance, flows, title):
    """Layers as columns, units as dots (colour = owning task or free, size = this input's
    relevance), lines = the strongest relevance flows between layers."""
    fig = go.Figure()
    positions = [np.linspace(0, 1, len(o)) if len(o) > 1 else np.array([0.5]) for o in owners]
    peak = max(float(np.abs(r).max()) for r in relevance) or 1.0
    strongest = max((abs(f[4]) for f in flows), default=1.0) or 1.0
    # one trace per (sign, width bucket) with None-separated segments: a browser draws a handful of
    # traces fast, but slows down with one trace per edge
    buckets = {}
    for lower, i, upper, j, flow in flows:
        key = (flow > 0, min(3, int(4 * abs(flow) / strongest)))
        xs, ys = buckets.setdefault(key, ([], []))
        xs += [lower, upper, None]
        ys += [positions[lower][i], positions[upper][j], None]
    for (positive, width), (xs, ys) in buckets.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(width=0.6 + 1.3 * width,
                                           color="rgba(214,39,40,0.45)" if positive else "rgba(31,119,180,0.45)")))
    tasks = sorted({int(t) for o in owners for t in o})
    for task in tasks:
        xs, ys, sizes, hover = [], [], [], []
        for layer, (name, owner, rel) in enumerate(zip(layer_names, owners, relevance)):
            for unit in np.flatnonzero(owner == task):
                xs.append(layer)
                ys.append(positions[layer][unit])
                sizes.append(3 + 22 * abs(float(rel[unit])) / peak)
                hover.append(f"layer {name}<br>unit {unit}<br>owner {owner_label(task)}"
                             f"<br>relevance {float(rel[unit]):.4f}")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=owner_label(task),
                                 marker=dict(size=sizes, color=task_colour(task), line=dict(width=0)),
                                 hovertext=hover, hoverinfo="text"))
    fig.update_layout(title=title, height=520, margin=dict(l=10, r=10, t=40, b=10), legend_title="unit owner",
                      xaxis=dict(tickvals=list(range(len(layer_names))), ticktext=layer_names),
                      yaxis=dict(visible=False))
    return fig


def owner_label(owner):
    """'task k' for a task index, 'free' for -1 (units no task has frozen)."""
    return "free" if owner < 0 else f"task {owner}"


def stacked_shares(shares, title, y_title):
    """Stacked bars: per layer (x), the share of each part. Parts are owners (task index, -1 for
    free units) or plain names ("free" is drawn grey)."""
    fig = go.Figure()
    layers = list(shares)
    parts = list(next(iter(shares.values()))) if shares else []
    for index, part in enumerate(parts):
        name = owner_label(part) if isinstance(part, int) else part
        colour = FREE_COLOUR if name == "free" else task_colour(part if isinstance(part, int) else index)
        fig.add_trace(go.Bar(x=layers, y=[shares[layer][part] for layer in layers], name=name, marker_color=colour,
                             hovertemplate=f"{name}, %{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="stack", title=title, yaxis_title=y_title, yaxis_tickformat=".0%", height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def grouped_bars(categories, series, title, y_title="accuracy (%)"):
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Bar(x=categories, y=values, name=name, text=[f"{v:.1f}" for v in values],
                             hovertemplate=f"{name}, %{{x}}: %{{y:.2f}}<extra></extra>"))
    fig.update_layout(barmode="group", title=title, yaxis_title=y_title, yaxis_range=[0, 105], height=340,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def heat_png(heat, size=84):
    """A heatmap as a small PNG data URI (red = evidence for, blue = against, white = 0), scaled to
    its own largest |value|: the thumbnails drawn inside the pathway graph."""
    import base64
    import io

    from PIL import Image
    heat = np.asarray(heat, dtype=np.float64)
    v = heat / (np.abs(heat).max() or 1.0)
    red, blue = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb = np.stack([1 - blue, 1 - red - blue, 1 - red], axis=-1).clip(0, 1)
    picture = Image.fromarray((rgb * 255).round().astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def grey_png(array, size=84):
    """What the model sees (a (C, H, W) array in [0, 1]) as a PNG data URI."""
    import base64
    import io
    buffer = io.BytesIO()
    image(array, scale=max(1, size // np.asarray(array).shape[-1])).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


CLASS_NODE = -2     # customdata layer of an output-class node in the pathway graph
_THUMB_X, _THUMB_Y, _TEXT_X = 0.3, 0.72, 0.2   # thumbnail size and label offset, in axis units


def pathway_graph(view):
    """The pathway of one input, left to right: input -> top units of every unit layer -> the
    task's classes. Each unit is a thumbnail of the input relevance that flows through it alone,
    framed in the colour of the task that froze it; edges are relevance flows (red for, blue
    against), width scaled per gap. Unit and class nodes are clickable (customdata = (layer, unit)
    or (CLASS_NODE, output row)).

    ``view`` is the plain dict ``ui`` builds from a Pathway (see pages/explore.py)."""
    fig = go.Figure()
    layers = view["layers"]
    positions = {}
    for i, layer in enumerate(layers):
        for r, unit in enumerate(layer["top"]):
            positions[(i, unit)] = (i + 1, r)
    last = len(layers) + 1
    for r, node in enumerate(view["classes"]):
        positions[(CLASS_NODE, node["row"])] = (last, r)
    positions[("input", 0)] = (0, 2.2)
    _edges(fig, view["edges"], positions)
    _input_column(fig, view)
    for i, layer in enumerate(layers):
        _unit_column(fig, i, layer, view)
    _class_column(fig, view, last)
    rows = max([len(layer["top"]) for layer in layers] + [len(view["classes"]), 4])
    fig.update_layout(
        title=dict(text=view["title"], x=0, font_size=15), height=150 + 112 * rows, dragmode=False,
        margin=dict(l=10, r=10, t=90, b=10), plot_bgcolor="white", clickmode="event+select",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, title_text="unit frozen by "),
        xaxis=dict(visible=False, range=[-0.35, last + 0.75], fixedrange=True),
        yaxis=dict(visible=False, range=[rows - 0.4, -0.9], fixedrange=True))
    return fig


def _thumbnail(fig, x, y, source):
    fig.add_layout_image(source=source, x=x, y=y, xref="x", yref="y", sizex=_THUMB_X, sizey=_THUMB_Y,
                         xanchor="center", yanchor="middle", sizing="stretch", layer="above")


def _edges(fig, edges, positions):
    """Edges bucketed by (sign, width): a handful of traces instead of one per edge."""
    gaps = {}
    for edge in edges:
        gaps.setdefault(edge["gap"], []).append(edge)
    buckets = {}
    for gap_edges in gaps.values():
        strongest = max(abs(e["flow"]) for e in gap_edges) or 1.0
        for e in gap_edges:
            if e["lower"] not in positions or e["upper"] not in positions:
                continue
            (x0, y0), (x1, y1) = positions[e["lower"]], positions[e["upper"]]
            key = (e["flow"] > 0, min(4, int(5 * abs(e["flow"]) / strongest)))
            xs, ys = buckets.setdefault(key, ([], []))
            start = x0 + (_THUMB_X / 2 if e["lower"] == ("input", 0) else _TEXT_X + 0.5)
            xs += [start, x1 - _THUMB_X / 2, None]
            ys += [y0, y1, None]
    for (positive, width), (xs, ys) in sorted(buckets.items()):
        colour = "rgba(214,39,40,0.55)" if positive else "rgba(31,119,180,0.55)"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(width=1 + 2.2 * width, color=colour)))


def _input_column(fig, view):
    _thumbnail(fig, 0, 0.2, view["input_png"])
    _thumbnail(fig, 0, 2.2, view["heatmap_png"])
    fig.add_annotation(x=0, y=-0.35, text="<b>input</b>", showarrow=False, yanchor="bottom")
    fig.add_annotation(x=0, y=1.75, text="heatmap (all units)", showarrow=False, yanchor="bottom",
                       font_size=11)
    fig.add_annotation(x=0, y=2.65, text=f"total R = {view['heatmap_total']:+.2f}", showarrow=False,
                       yanchor="top", font_size=11)


def _unit_column(fig, i, layer, view):
    x = i + 1
    fig.add_annotation(x=x - _THUMB_X / 2, y=-0.55, xanchor="left", yanchor="bottom", showarrow=False,
                       text=f"<b>{layer['name']}</b> <span style='color:#777'>{layer['caption']}</span>",
                       font_size=12)
    by_owner = {}
    for r, unit in enumerate(layer["top"]):
        _thumbnail(fig, x, r, layer["pngs"][r])
        by_owner.setdefault(int(layer["owner"][unit]), []).append((r, unit))
    selected = view.get("selected")
    for owner, nodes in sorted(by_owner.items()):
        colour = task_colour(owner)
        labels = [f"<b>{layer['name']}·{u}</b> <span style='color:{colour}'>({owner_label(owner)})</span><br>"
                  f"R = {layer['relevance'][u]:+.2f} · {layer['share'][u]:.0%}" for _, u in nodes]
        hover = [f"{layer['name']} unit {u}, frozen by {owner_label(owner)}<br>relevance {layer['relevance'][u]:+.3f}"
                 f" ({layer['share'][u]:.0%} of the layer's |R|)<br>click: what this unit sees" for _, u in nodes]
        fig.add_trace(go.Scatter(
            x=[x] * len(nodes), y=[r for r, _ in nodes], mode="markers+text", text=labels,
            textposition="middle right", textfont_size=11, hovertext=hover, hoverinfo="text",
            customdata=[[i, int(u)] for _, u in nodes], name=owner_label(owner), legendgroup=owner_label(owner),
            showlegend=owner_label(owner) not in view["legend_done"],
            selectedpoints=[k for k, (_, u) in enumerate(nodes) if selected == (i, int(u))] if selected else None,
            marker=dict(symbol="square", size=70, color="rgba(0,0,0,0)", line=dict(width=4, color=colour)),
            unselected=dict(marker=dict(opacity=0.45))))
        view["legend_done"].add(owner_label(owner))
    _shared_marks(fig, x, layer, view)


def _shared_marks(fig, x, layer, view):
    """A dot at the corner of every unit the overlaid subnetwork also keeps."""
    other = view.get("other")
    if other is None:
        return
    shared = [r for r, unit in enumerate(layer["top"]) if other["kept"][layer["index"]][unit]]
    fig.add_trace(go.Scatter(x=[x + _THUMB_X / 2] * len(shared), y=[r - _THUMB_Y / 2 for r in shared],
                             mode="markers", hoverinfo="skip", name=f"also in task {other['task']}'s subnetwork",
                             legendgroup="shared", showlegend=not view["legend_done"].intersection({"shared"}),
                             marker=dict(symbol="diamond", size=13, color=task_colour(other["task"]),
                                         line=dict(width=1.5, color="black"))))
    view["legend_done"].add("shared")


def _class_column(fig, view, x):
    fig.add_annotation(x=x - _THUMB_X / 2, y=-0.55, xanchor="left", yanchor="bottom", showarrow=False,
                       text=f"<b>task {view['task']} output</b>", font_size=12)
    nodes = view["classes"]
    colour = task_colour(view["task"])
    fig.add_trace(go.Scatter(
        x=[x] * len(nodes), y=list(range(len(nodes))), mode="markers+text", showlegend=False,
        text=[f"<b>{n['name']}</b><br>{'explained' if n['explained'] else 'click to explain'}<br>"
              f"p = {n['p']:.2f} · logit {n['logit']:+.2f}" for n in nodes],
        textposition="middle right", textfont_size=11, hoverinfo="text",
        hovertext=[f"class {n['name']}: p = {n['p']:.3f} within task {view['task']}" for n in nodes],
        customdata=[[CLASS_NODE, n["row"]] for n in nodes],
        marker=dict(symbol="square", size=[40 if n["explained"] else 30 for n in nodes],
                    color=[colour if n["explained"] else FREE_COLOUR for n in nodes],
                    line=dict(width=2, color="black"))))


def unit_shares(labels, shares, title):
    """One unit's share of its layer's relevance in every subnetwork (bars coloured by task)."""
    fig = go.Figure(go.Bar(x=labels, y=shares, marker_color=[task_colour(i) for i in range(len(labels))],
                           text=[f"{s:.0%}" for s in shares], hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(title=title, yaxis_tickformat=".0%", height=260, margin=dict(l=10, r=10, t=40, b=10))
    return fig
