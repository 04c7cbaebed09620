"""Plotly figures built from plain numbers returned by rerelrp_core (no model access here)."""
import base64
import collections
import hashlib
import io
import threading

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
    fig = go.Figure(go.Heatmap(z=z, x=[f"task {k}" for k in range(n)],
                               y=[f"after task {t}" for t in range(n)],
                               text=text, texttemplate="%{text}", zmin=0, zmax=100, colorscale="Viridis",
                               hovertemplate="%{y}, %{x}: %{z:.2f}%<extra></extra>"))
    fig.update_layout(title=title, yaxis_autorange="reversed", height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def clickable_cells(fig, cells, labels_x, labels_y, hover):
    """Invisible square markers over heatmap cells (``cells``: (row, column) pairs), each carrying
    its (row, column) as customdata and answering the hover with ``hover(row, column)``, so that
    a click on a cell selects it (Streamlit selects points of scatter traces)."""
    fig.add_trace(go.Scatter(x=[labels_x[c] for _, c in cells], y=[labels_y[r] for r, _ in cells],
                             customdata=[[r, c] for r, c in cells], mode="markers", showlegend=False,
                             marker=dict(symbol="square", size=36, color="rgba(255,255,255,0.01)"),
                             text=[hover(r, c) for r, c in cells], hovertemplate="%{text}<extra></extra>"))
    return fig


def traced_matrix(matrix, title):
    """:func:`accuracy_matrix` whose cells can be clicked (customdata: step, task), hovering each
    cell's change since its task was learnt."""
    fig = accuracy_matrix(matrix, title)
    n = len(matrix)

    def hover(t, k):
        return (f"after task {t}, task {k}: {matrix[t][k]:.2f}% ({matrix[t][k] - matrix[k][k]:+.2f} since it "
                "was learnt); click for its images")
    fig.update_layout(height=360)
    return clickable_cells(fig, [(t, k) for t in range(n) for k in range(t + 1)],
                           [f"task {k}" for k in range(n)], [f"after task {t}" for t in range(n)], hover)


def recognition_confusion(confusion, step):
    """True task (rows) x recognised task (columns) after ``step``: image counts, and the share of
    the step's task-agnostic mistakes each off-diagonal cell explains; clickable cells."""
    counts, shares = np.array(confusion["counts"]), np.array(confusion["shares"])
    n = len(counts)
    labels_x, labels_y = [f"as task {r}" for r in range(n)], [f"task {t}" for t in range(n)]
    rate = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    text = [[f"{counts[t, r]}" + (f"<br>{shares[t, r]:.0%} of mistakes" if t != r and counts[t, r] else "")
             for r in range(n)] for t in range(n)]
    fig = go.Figure(go.Heatmap(z=rate, x=labels_x, y=labels_y, text=text, texttemplate="%{text}",
                               zmin=0, zmax=1, colorscale="Blues", showscale=False,
                               hovertemplate="%{y} recognised %{x}: %{z:.1%} of its images<extra></extra>"))
    fig.update_layout(title=f"Which task each task's test images were recognised as, after task {step}",
                      yaxis_autorange="reversed", xaxis_title="recognised", height=140 + 50 * n,
                      margin=dict(l=10, r=10, t=40, b=10))
    cells = [(t, r) for t in range(n) for r in range(n) if counts[t, r]]
    return clickable_cells(fig, cells, labels_x, labels_y,
                           lambda t, r: f"task {t} as task {r}: {counts[t, r]} images; click for them")


def run_pair(counts, first, second):
    """2x2 table of images right/wrong in two runs after their last task; clickable cells."""
    labels_x = [f"{second}: wrong", f"{second}: right"]
    labels_y = [f"{first}: wrong", f"{first}: right"]
    counts = np.array(counts)
    fig = go.Figure(go.Heatmap(z=counts, x=labels_x, y=labels_y, text=counts, texttemplate="%{text}",
                               colorscale="Greys", showscale=False, zmin=0, zmax=max(1, 3 * counts.max()),
                               hovertemplate="%{y}, %{x}: %{z} images<extra></extra>"))
    fig.update_layout(title="Test images after the last task", yaxis_autorange="reversed", height=260,
                      margin=dict(l=10, r=10, t=40, b=10))
    return clickable_cells(fig, [(a, b) for a in (0, 1) for b in (0, 1)], labels_x, labels_y,
                           lambda a, b: f"{labels_y[a]}, {labels_x[b]}: {counts[a, b]} images; click")


def weight_movement(layers):
    """Per unit layer, how far the weights of the units an image's task uses (and of the others)
    moved between two snapshots (relative L2 change)."""
    names = [layer["layer"] for layer in layers]
    fig = go.Figure()
    for part, label, colour in (("used", "units the task uses", task_colour(0)),
                                ("other", "other units", FREE_COLOUR)):
        values = [layer[part] for layer in layers]
        if any(v is not None for v in values):
            fig.add_trace(go.Bar(x=names, y=[v or 0.0 for v in values], name=label, marker_color=colour,
                                 text=["—" if v is None else f"{v:.3f}" for v in values],
                                 textposition="outside",
                                 hovertemplate=f"%{{x}}, {label}: moved %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", title="How far the weights moved since the task was learnt",
                      yaxis_title="‖Δw‖ / ‖w‖", height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def reuse_matrix(matrix):
    """Row i = the task that froze the units, column j = the task whose subnetwork uses them."""
    n = len(matrix)
    labels = [f"task {k}" for k in range(n)]
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=[f"frozen by task {k}" for k in range(n)],
                               text=[[f"{v:.0%}" if v else "" for v in row] for row in matrix],
                               texttemplate="%{text}", zmin=0, zmax=1, colorscale="Blues",
                               hovertemplate="%{x}'s subnetwork: %{z:.1%} of its units %{y}<extra></extra>"))
    fig.update_layout(title="Reuse: what each task's subnetwork is made of", yaxis_autorange="reversed",
                      xaxis_title="subnetwork of", height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def pruning_curve(curve, pick, acc_drop):
    """Validation accuracy against the units a task keeps, along its relevance ranking; the acc_drop
    floor, the level it picks (``pick``) and the level the search chose."""
    chosen = curve["chosen"]
    fig = go.Figure(go.Scatter(x=curve["kept"], y=curve["accuracy"], mode="lines+markers",
                               name="pruning level",
                               hovertemplate="keeps %{x} units: %{y:.2f}%<extra></extra>"))
    fig.add_hline(y=curve["reference"] - acc_drop, line_dash="dash", line_color="grey",
                  annotation_text=f"unpruned − {acc_drop:g} points")
    fig.add_trace(go.Scatter(x=[curve["kept"][chosen]], y=[curve["accuracy"][chosen]], mode="markers",
                             marker=dict(size=16, symbol="star", color=task_colour(1)), name="what it kept"))
    fig.add_trace(go.Scatter(x=[curve["kept"][pick]], y=[curve["accuracy"][pick]], mode="markers",
                             marker=dict(size=14, symbol="circle-open", line_width=3, color=task_colour(0)),
                             name=f"acc_drop {acc_drop:g}"))
    fig.update_layout(title="Validation accuracy as pruning goes on", xaxis_title="units the task keeps",
                      xaxis_autorange="reversed", yaxis_title="validation accuracy (%)", height=360,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def memory_card(rows):
    """Stacked bars: per run, the kB it keeps beyond the network, by kind (rows of
    :func:`ui.summaries.stored_summary`); the total is written above each bar."""
    kinds = list(dict.fromkeys(k for row in rows for k in row if k.endswith(" (kB)") and k != "kept (kB)"))
    names = [row["run"] for row in rows]
    fig = go.Figure()
    for index, kind in enumerate(kinds):
        fig.add_trace(go.Bar(x=names, y=[row.get(kind, 0) for row in rows], name=kind[:-5],
                             marker_color=task_colour(index),
                             hovertemplate=f"%{{x}}: %{{y:.1f}} kB of {kind[:-5]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=names, y=[row["kept (kB)"] for row in rows], mode="text", showlegend=False,
                             text=[f"{row['kept (kB)']:,.0f} kB" for row in rows], textposition="top center",
                             hoverinfo="skip"))
    fig.update_layout(barmode="stack", title="What each method keeps besides the network", yaxis_title="kB",
                      height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def drift_against_loss(series):
    """One line per run: explanation drift (x) against the accuracy points the image's task lost (y),
    one marker per step after the task. ``series``: name -> (drift scores, points lost, steps)."""
    fig = go.Figure()
    for name, (drifts, lost, steps) in series.items():
        fig.add_trace(go.Scatter(x=drifts, y=lost, mode="lines+markers+text", name=name,
                                 text=[f"after task {s}" for s in steps], textposition="top center",
                                 hovertemplate="%{text}: drift %{x:.3f}, −%{y:.2f} points<extra></extra>"))
    fig.update_layout(title="Drift of the explanation against the task's accuracy loss",
                      xaxis_title="drift (1 − cosine to right after its task)",
                      yaxis_title="task-aware accuracy lost (points)", height=340,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def curves(series, title, y_title="average accuracy (%)"):
    """One line per name in ``series`` (name -> values per step)."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="after task", xaxis_dtick=1, yaxis_title=y_title,
                      yaxis_range=[0, 101], height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def image(array, scale=8):
    """What the model sees, as a Pillow image upscaled without smoothing (a grey (1, H, W) or colour
    (3, H, W) array in [0, 1])."""
    from PIL import Image
    array = np.asarray(array)
    pixels = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    picture = (Image.fromarray(pixels[0]) if pixels.shape[0] == 1
               else Image.fromarray(pixels.transpose(1, 2, 0)))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def heatmaps(maps, titles, image=None):
    """LRP heatmaps side by side (red = evidence for, blue = against), one colour scale each; laid over
    ``image`` (C, H, W) when it is a colour image (see :func:`heat_rgb`)."""
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=titles, horizontal_spacing=0.02)
    over = is_colour(image)
    for i, heat in enumerate(maps):
        bound = float(np.abs(heat).max()) or 1.0
        if over:
            fig.add_trace(go.Image(z=heat_rgb(heat, image), hoverinfo="skip"), row=1, col=i + 1)
        # Over a colour image the heatmap trace is invisible and only answers the hover.
        fig.add_trace(go.Heatmap(z=heat, colorscale="RdBu_r", zmin=-bound, zmax=bound, showscale=False,
                                 opacity=0 if over else 1,
                                 hovertemplate="x %{x}, y %{y}: relevance %{z:.4f}<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i + 1}", visible=False, row=1, col=i + 1)
        fig.update_xaxes(visible=False, row=1, col=i + 1)
    lines = max((t.count("<br>") for t in titles), default=0)      # room for titles of several lines
    fig.update_layout(height=260 + 18 * lines, margin=dict(l=5, r=5, t=40 + 18 * lines, b=5))
    return fig


def probabilities(labels, values, title, highlight=None):
    colours = [task_colour(i) if highlight is None or i == highlight else FREE_COLOUR
               for i in range(len(values))]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colours, text=[f"{v:.2f}" for v in values],
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, yaxis_range=[0, 1], height=280, margin=dict(l=10, r=10, t=40, b=10))
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
        fig.add_trace(go.Bar(x=layers, y=[shares[layer][part] for layer in layers], name=name,
                             marker_color=colour,
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


def heat_png(heat, size=84, image=None):
    """:func:`heat_image` as a PNG data URI, made once per picture (see :func:`_remembered`)."""
    colour = image if is_colour(image) else None     # a grey image does not change the picture
    return _remembered(("heat", size, _digest(heat), colour is not None and _digest(colour)),
                       lambda: png_uri(heat_image(heat, size, colour)))


def image_png(array, scale=8):
    """:func:`image` as a PNG data URI, made once per picture (see :func:`_remembered`)."""
    return _remembered(("image", scale, _digest(array)), lambda: png_uri(image(array, scale)))


def file_png(path):
    """A PNG file as a data URI, read once per version of the file."""
    return _remembered(("file", str(path), path.stat().st_mtime_ns),
                       lambda: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode())


def png_uri(picture):
    """A Pillow image as a PNG data URI."""
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


_PICTURES, _PICTURES_LOCK = collections.OrderedDict(), threading.Lock()
PICTURES_KEPT = 4096        # a few kB each


def _digest(array):
    array = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha1(array.tobytes()).hexdigest(), array.shape, array.dtype.str


def _remembered(key, build):
    """The data URI ``build()`` makes, kept for the whole server by what the picture shows (``key``).
    Pages hand Streamlit data URIs rather than pixels: pixels are encoded again on every rerun and
    stored in Streamlit's media store under one lock, the largest cost of a rerun when a class opens
    the same link at once (bench/README "Thirty students"); a data URI is sent as it is."""
    with _PICTURES_LOCK:
        if key in _PICTURES:
            _PICTURES.move_to_end(key)
            return _PICTURES[key]
    uri = build()
    with _PICTURES_LOCK:
        _PICTURES[key] = uri
        while len(_PICTURES) > PICTURES_KEPT:
            _PICTURES.popitem(last=False)
    return uri


def is_colour(image):
    return image is not None and np.asarray(image).shape[0] == 3


def heat_rgb(heat, image=None):
    """A heatmap (H, W) as an (H, W, 3) uint8 picture scaled to its own largest |value|: red = evidence
    for, blue = against. On white; or, when ``image`` is a colour image (3, H, W) in [0, 1], over a
    faded grey copy of it, so the relevance shows where on the object it lies (red over a red object
    would not show). Over an image the opacity is 2 |value|, full from half the largest |value| on:
    most relevance sits on few pixels, and the picture would hide the rest."""
    heat = np.asarray(heat, dtype=np.float64)
    v = heat / (np.abs(heat).max() or 1.0)
    red, blue = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    if is_colour(image):
        grey = 0.35 + 0.65 * np.tensordot([0.299, 0.587, 0.114], np.clip(image, 0, 1), axes=1)
        opacity = np.clip(2 * np.abs(v), 0, 1)[..., None]
        pure = np.stack([red > 0, np.zeros_like(v), blue > 0], axis=-1).astype(np.float64)
        rgb = (1 - opacity) * grey[..., None] + opacity * pure
    else:
        rgb = np.stack([1 - blue, 1 - red - blue, 1 - red], axis=-1).clip(0, 1)
    return (rgb * 255).round().astype(np.uint8)


def heat_image(heat, size=168, image=None):
    """:func:`heat_rgb` as a Pillow image enlarged without smoothing, so each input pixel stays
    visible."""
    from PIL import Image
    return Image.fromarray(heat_rgb(heat, image)).resize((size, size), Image.Resampling.NEAREST)


def grey_png(array, size=84):
    """What the model sees (a (C, H, W) array in [0, 1]) as a PNG data URI about ``size`` pixels wide."""
    return image_png(array, scale=max(1, size // np.asarray(array).shape[-1]))


CLASS_NODE = -2     # customdata layer of an output-class node in the pathway graph
GRAPH_WIDTH, ROW_PX, THUMB_PX = 1150, 118, 62     # the pathway graph's geometry, in pixels


def pathway_graph(view):
    """The pathway of one input, left to right: input -> top units of every shown unit layer -> the
    task's classes. Each unit is a thumbnail of the input relevance that flows through it alone,
    framed in the colour of the task that froze it; edges are relevance flows (red for, blue
    against), width scaled per gap. Unit and class nodes are clickable (customdata = (layer, unit)
    or (CLASS_NODE, output row)).

    ``view`` is the plain dict :func:`ui.pathway_view.graph_view` builds from a Pathway."""
    layers = view["layers"]
    last = len(layers) + 1
    rows = max([len(layer["top"]) for layer in layers] + [len(view["classes"]), 3])
    x_range, y_range = [-0.45, last + 0.75], [rows - 0.45, -1.0]
    geometry = _Geometry(x_range, y_range, GRAPH_WIDTH - 20, ROW_PX * (y_range[0] - y_range[1]))
    positions = {(layer["index"], unit): (column + 1, r)
                 for column, layer in enumerate(layers) for r, unit in enumerate(layer["top"])}
    positions.update({(CLASS_NODE, node["row"]): (last, r) for r, node in enumerate(view["classes"])})
    positions[("input", 0)] = (0, 2)
    canvas = _Canvas()
    _edges(canvas, view["edges"], positions, geometry)
    _input_column(canvas, view, geometry)
    for column, layer in enumerate(layers):
        _unit_column(canvas, column + 1, layer, view, geometry)
    _class_column(canvas, view, last)
    fig = go.Figure(data=canvas.traces)
    fig.update_layout(
        images=canvas.images, annotations=canvas.annotations,
        title=dict(text=view["title"], x=0, font=dict(size=15)), width=GRAPH_WIDTH,
        height=geometry.height + 100,
        margin=dict(l=10, r=10, t=90, b=10), plot_bgcolor="white", clickmode="event+select", dragmode=False,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0,
                    title_text="unit frozen by " if view["has_masks"] else ""),
        showlegend=view["has_masks"],
        xaxis=dict(visible=False, range=x_range, fixedrange=True),
        yaxis=dict(visible=False, range=y_range, fixedrange=True))
    return fig


class _Canvas:
    """Collects traces, images and annotations, so the figure is built (and validated by plotly)
    once: adding 20 thumbnails one by one to a Figure re-validates all of them every time."""

    def __init__(self):
        self.traces, self.images, self.annotations = [], [], []

    def add_trace(self, trace):
        self.traces.append(trace)

    def add_layout_image(self, **image):
        self.images.append(image)

    def add_annotation(self, **annotation):
        self.annotations.append(annotation)


class _Geometry:
    """Axis units per pixel, so that thumbnails come out square whatever the number of columns."""

    def __init__(self, x_range, y_range, width_px, height_px):
        self.height = height_px
        self.thumb_x = THUMB_PX * (x_range[1] - x_range[0]) / width_px
        self.thumb_y = THUMB_PX * (y_range[0] - y_range[1]) / height_px


def _thumbnail(fig, x, y, source, geometry):
    fig.add_layout_image(source=source, x=x, y=y, xref="x", yref="y", sizex=geometry.thumb_x,
                         sizey=geometry.thumb_y, xanchor="center", yanchor="middle", sizing="stretch",
                         layer="above")


def _edges(fig, edges, positions, geometry):
    """Edges bucketed by (sign, width): a handful of traces instead of one per edge."""
    gaps = {}
    for edge in edges:
        if edge["lower"] in positions and edge["upper"] in positions:
            gaps.setdefault(edge["gap"], []).append(edge)
    buckets = {}
    for gap_edges in gaps.values():
        strongest = max(abs(e["flow"]) for e in gap_edges) or 1.0
        for e in gap_edges:
            (x0, y0), (x1, y1) = positions[e["lower"]], positions[e["upper"]]
            key = (e["flow"] > 0, min(4, int(5 * abs(e["flow"]) / strongest)))
            xs, ys = buckets.setdefault(key, ([], []))
            xs += [x0 + 0.55 * geometry.thumb_x, x1 - 0.55 * geometry.thumb_x, None]
            ys += [y0, y1, None]
    for (positive, width), (xs, ys) in sorted(buckets.items()):
        colour = "rgba(214,39,40,0.5)" if positive else "rgba(31,119,180,0.5)"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(width=1 + 2.5 * width, color=colour)))


def _header(fig, x, title, caption=""):
    fig.add_annotation(x=x, y=-0.62, yanchor="bottom", showarrow=False, font=dict(size=11),
                       text=f"<b>{title}</b><br><span style='color:#777'>{caption}</span>")


def _input_column(fig, view, geometry):
    _header(fig, 0, "input")
    _thumbnail(fig, 0, 0, view["input_png"], geometry)
    _thumbnail(fig, 0, 2, view["heatmap_png"], geometry)
    fig.add_annotation(x=0, y=2 + 0.3, yanchor="top", showarrow=False, font=dict(size=11),
                       text=f"heatmap, all units<br>total R = {view['heatmap_total']:+.2f}")


def _unit_column(fig, x, layer, view, geometry):
    i = layer["index"]
    _header(fig, x, layer["name"], layer["caption"])
    by_owner = {}
    for r, unit in enumerate(layer["top"]):
        _thumbnail(fig, x, r, layer["pngs"][r], geometry)
        by_owner.setdefault(int(layer["owner"][unit]), []).append((r, unit))
    selected = view.get("selected")
    for owner, nodes in sorted(by_owner.items()):
        colour, name = task_colour(owner), owner_label(owner)
        owner_text = f" <span style='color:{colour}'>({name})</span>" if view["has_masks"] else ""
        frozen = f", frozen by {name}" if view["has_masks"] else ""
        labels = [f"<b>{layer['name']}·{u}</b>{owner_text}<br>"
                  f"R {layer['relevance'][u]:+.2f} · {layer['share'][u]:.0%}" for _, u in nodes]
        hover = [f"{layer['name']} unit {u}{frozen}<br>relevance {layer['relevance'][u]:+.3f} "
                 f"({layer['share'][u]:.0%} of the layer's |R|)<br>click: what this unit sees"
                 for _, u in nodes]
        chosen = [k for k, (_, u) in enumerate(nodes) if selected == (i, int(u))]
        fig.add_trace(go.Scatter(
            x=[x] * len(nodes), y=[r for r, _ in nodes], mode="markers+text", text=labels,
            textposition="bottom center", textfont=dict(size=10, color="#222"), hovertext=hover,
            hoverinfo="text", customdata=[[i, int(u)] for _, u in nodes], name=name, legendgroup=name,
            showlegend=name not in view["legend_done"], selectedpoints=chosen if selected else None,
            marker=dict(symbol="square", size=THUMB_PX + 4, color="rgba(0,0,0,0)",
                        line=dict(width=4, color=colour)),
            unselected=dict(marker=dict(opacity=0.35), textfont=dict(color="#555"))))
        view["legend_done"].add(name)
    _shared_marks(fig, x, layer, view, geometry)


def _shared_marks(fig, x, layer, view, geometry):
    """A diamond at the corner of every unit the overlaid subnetwork also keeps."""
    other = view.get("other")
    if other is None:
        return
    shared = [r for r, unit in enumerate(layer["top"]) if other["kept"][layer["index"]][unit]]
    fig.add_trace(go.Scatter(x=[x + geometry.thumb_x / 2] * len(shared),
                             y=[r - geometry.thumb_y / 2 for r in shared], mode="markers", hoverinfo="skip",
                             name=f"also in task {other['task']}'s subnetwork",
                             legendgroup="shared", showlegend="shared" not in view["legend_done"],
                             marker=dict(symbol="diamond", size=13, color=task_colour(other["task"]),
                                         line=dict(width=1.5, color="black"))))
    view["legend_done"].add("shared")


def _class_column(fig, view, x):
    _header(fig, x, f"task {view['task']} output", "click a class to explain it")
    nodes = view["classes"]
    colour = task_colour(view["task"])
    fig.add_trace(go.Scatter(
        x=[x] * len(nodes), y=list(range(len(nodes))), mode="markers+text", showlegend=False,
        text=[f"<b>{n['name']}</b>{' (explained)' if n['explained'] else ''}<br>p {n['p']:.2f} · logit "
              f"{n['logit']:+.2f}" for n in nodes],
        textposition="bottom center", textfont=dict(size=10, color="#222"), hoverinfo="text",
        hovertext=[f"class {n['name']}: p = {n['p']:.3f} within task {view['task']}" for n in nodes],
        customdata=[[CLASS_NODE, n["row"]] for n in nodes],
        marker=dict(symbol="square", size=[44 if n["explained"] else 34 for n in nodes],
                    color=[colour if n["explained"] else FREE_COLOUR for n in nodes],
                    line=dict(width=2, color="black")),
        unselected=dict(marker=dict(opacity=0.6), textfont=dict(color="#555"))))


def unit_shares(labels, shares, title):
    """One unit's share of its layer's relevance in every subnetwork (bars coloured by task)."""
    fig = go.Figure(go.Bar(x=labels, y=shares, marker_color=[task_colour(i) for i in range(len(labels))],
                           text=[f"{s:.0%}" for s in shares], hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(title=title, yaxis_tickformat=".0%", height=260, margin=dict(l=10, r=10, t=40, b=10))
    return fig
