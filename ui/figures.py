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
