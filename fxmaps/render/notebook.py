"""How fxmaps's records show themselves in a notebook: HTML for ``_repr_html_``.

* :func:`graph_html`: a :class:`~fxmaps.ModelGraph` as census chips (the counts of
  :meth:`~fxmaps.ModelGraph.info`) above its graph collapsed by blocks, as inline SVG; a
  note instead of the drawing where Graphviz's ``dot`` is missing.
* :func:`maps_html`: a :class:`~fxmaps.FeatureMaps` as a table of its maps (kind, shape,
  dtype, bytes) with a thumbnail mosaic of the first few, as inline PNG data URIs.
* :func:`stats_html`: a :class:`~fxmaps.ChannelStats` as a table of its nodes.

Everything is escaped and self-contained: no scripts, no network requests.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import numpy as np

from fxmaps.errors import FxmapsError, GraphvizNotFoundError
from fxmaps.extract.maps import FeatureMaps
from fxmaps.graph import ModelGraph, format_shape
from fxmaps.graph.model_graph import HEADLINE
from fxmaps.stats import ChannelStats

__all__ = ["graph_html", "html_table", "maps_html", "png_uri", "stats_html"]

THUMBNAILS = 4  # maps of a FeatureMaps shown as thumbnails
_THUMB_CHANNELS = 16  # channels in a thumbnail
_THUMB_PX = 96  # its longer side
_CHIP = (
    "display:inline-block;margin:0 4px 4px 0;padding:1px 8px;border-radius:10px;"
    "background:#eef3f8;border:1px solid #c6dbef;font:12px sans-serif"
)
_TABLE = "border-collapse:collapse;font:12px sans-serif"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain HTML table; cells are HTML already (escape text with ``html.escape``)."""
    head = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{cell}</td>' for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def png_uri(image: np.ndarray) -> str:
    """An ``(H, W)`` array in [0, 1] (NaN: padding) or an ``(H, W, 3)`` image, as a data URI."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    if image.ndim == 2:
        imsave(buffer, np.nan_to_num(image, nan=1.0), cmap="viridis", vmin=0, vmax=1, format="png")
    else:
        imsave(buffer, np.clip(image, 0, 1), format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def graph_html(graph: ModelGraph) -> str:
    """Census chips and the graph collapsed by blocks, as inline SVG (or a note without ``dot``)."""
    from fxmaps.render.graph import render_graph

    info = graph.info()
    chips = "".join(
        f'<span style="{_CHIP}"><b>{html.escape(key)}</b> {value}</span>'
        for key, value in info.items()
        if value or key in HEADLINE
    )
    title = html.escape(f"{type(graph.model).__name__}: {len(graph)} nodes")
    try:
        svg = render_graph(graph, collapse="blocks")._repr_svg_()
        drawing = f'<div style="max-height:640px;overflow:auto">{_svg_body(svg)}</div>'
    except GraphvizNotFoundError:
        drawing = (
            "<p><i>The graph is not drawn: Graphviz's <code>dot</code> program is not on PATH "
            "(install Graphviz, e.g. <code>apt-get install graphviz</code>).</i></p>"
        )
    return f'<div class="fxmaps-graph"><div><b>{title}</b></div><div>{chips}</div>{drawing}</div>'


def _svg_body(svg: str) -> str:
    """The ``<svg>`` element of a document, without its XML prologue and doctype."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def maps_html(maps: FeatureMaps) -> str:
    """A table of the maps, with a thumbnail of the first :data:`THUMBNAILS` that can be drawn."""
    rows = []
    for index, (name, tensor) in enumerate(maps.items()):
        thumbnail = _thumbnail(maps, name) if index < THUMBNAILS else ""
        rows.append(
            [
                f"<code>{html.escape(name)}</code>",
                html.escape(maps.layer(name).kind.value),
                html.escape(format_shape(tuple(tensor.shape))),
                html.escape(str(tensor.dtype).removeprefix("torch.")),
                html.escape(_size(tensor.numel() * tensor.element_size())),
                thumbnail,
            ]
        )
    title = html.escape(f"FeatureMaps: {len(maps)} maps, {_size(maps.nbytes)}")
    table = html_table(("name", "kind", "shape", "dtype", "bytes", "maps"), rows)
    skipped = (
        f"<div>no tensor: {html.escape(', '.join(maps.skipped))}</div>" if maps.skipped else ""
    )
    return f'<div class="fxmaps-maps"><div><b>{title}</b></div>{table}{skipped}</div>'


def _thumbnail(maps: FeatureMaps, name: str) -> str:
    """A small mosaic of the first channels as an ``<img>``; empty where it cannot be drawn."""
    from fxmaps.render.maps import mosaic
    from fxmaps.render.panels import panel_of, selected

    try:
        panel = selected(panel_of(maps, name, 0), "index", _THUMB_CHANNELS)
    except FxmapsError:
        return ""
    if panel.axis is None:  # tiles, enlarged by a whole factor or thinned to thumbnail size
        image = mosaic(panel.data)
        zoom = max(1, _THUMB_PX // max(image.shape))
        image = image.repeat(zoom, axis=0).repeat(zoom, axis=1)
        step = math.ceil(max(image.shape) / (2 * _THUMB_PX))
        image = image[::step, ::step]
    else:  # one row per channel (1-D maps, token rows, a linear layer's features)
        image = mosaic(panel.data[None], normalize="shared")
        image = image.repeat(max(1, 12 // len(image)), axis=0)
    alt = html.escape(f"{name}: {len(panel.data)} channels")
    style = f"image-rendering:pixelated;max-width:{2 * _THUMB_PX}px;max-height:{_THUMB_PX}px"
    return f'<img src="{png_uri(image)}" alt="{alt}" style="{style}">'


def stats_html(stats: ChannelStats) -> str:
    """A table of the nodes: channels, dead channels, the range of the channel means."""
    rows = []
    for name, layer in stats.items():
        mean = layer.mean.double()
        rows.append(
            [
                f"<code>{html.escape(name)}</code>",
                str(layer.channels),
                str(len(layer.dead)),
                f"{float(mean.min()):.4g} … {float(mean.max()):.4g}",
                f"{float(layer.positive.double().mean()):.3f}",
                f"{float(layer.max.double().max()):.4g}",
            ]
        )
    title = html.escape(
        f"ChannelStats: {len(stats)} nodes over {stats.samples} samples, "
        f"top {stats.topk} by {stats.score}"
    )
    headers = ("node", "channels", "dead", "channel means", "fraction positive", "max")
    return f'<div class="fxmaps-stats"><div><b>{title}</b></div>{html_table(headers, rows)}</div>'


def _size(count: int) -> str:
    scaled, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if scaled < 1024 or unit == "GiB":
            break
        scaled /= 1024
    return f"{count} B" if unit == "B" else f"{scaled:.1f} {unit}"
