"""The report's sections, each a function of one :class:`Context` that returns HTML.

:data:`SECTIONS` lists them in page order; a new section (class activation maps,
say) is one more function there. Names and text are escaped where they enter the
page; figures are embedded by :mod:`fxmaps.report.images`. Each figure that
belongs to a node carries ``data-node`` (its graph node) and ``data-role``
(``maps`` or ``filters``; ``cam`` for the class activation maps): the node panel shows
maps and filters from there, so no image is embedded twice.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fxmaps.attribute import cam
from fxmaps.errors import InputError, one_line
from fxmaps.extract.maps import FeatureMaps
from fxmaps.graph import Layer, ModelGraph, format_shape
from fxmaps.progress import progress
from fxmaps.render.cam import plot_cam
from fxmaps.render.filters import FilterFigures, drawable
from fxmaps.render.maps import plot_feature_maps
from fxmaps.render.table import NUMERIC_HEADERS, SUMMARY_HEADERS
from fxmaps.report.graph_view import graph_section
from fxmaps.report.images import figure_uri

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SECTIONS", "Context"]

# Filters drawn per conv, and their resolution: the panel and the page show them at most
# about 400 pixels wide, and a model has a figure per conv (81 for EfficientNet-B0).
_MAX_FILTERS = 16
_FILTERS_DPI = 72
_TOP = 5  # predictions shown
_CAM_CLASSES = 3  # top classes whose class activation maps are shown


@dataclass(frozen=True)
class Context:
    """What the sections are made from."""

    graph: ModelGraph
    maps: FeatureMaps | None  # None: no layer to draw
    shown: torch.Tensor | None  # the input as a picture, when it is an image
    source: str  # what the input is, in words
    batch: Any  # what the model ran on
    logits: tuple[str, torch.Tensor] | None  # a classifier's scores and the node giving them
    max_maps: int
    progress: bool


def input_section(context: Context) -> str:
    graph, batch = context.graph, context.batch
    facts = {
        "model": f"{type(graph.model).__name__}, "
        f"{graph.total_params:,} parameters in {len(graph)} graph nodes",
        "input": context.source,
    }
    if isinstance(batch, torch.Tensor):
        facts["tensor"] = f"{format_shape(tuple(batch.shape))}, {batch.dtype}".replace("torch.", "")
    if graph.eager:
        facts["ran as Python"] = ", ".join(region.name for region in graph.eager)
    rows = "".join(f"<dt>{key}</dt><dd>{html.escape(value)}</dd>" for key, value in facts.items())
    shown = context.shown
    picture = "" if shown is None else f"<img alt='the input image' src='{_picture(shown)}'>"
    return (
        f"<section id='input'><h2>Model and input</h2><div class='input'>"
        f"{picture}<dl>{rows}</dl></div></section>"
    )


def census_section(context: Context) -> str:
    counts = {kind: n for kind, n in context.graph.info().items() if n and kind != "nodes"}
    cells = "".join(f"<div><b>{n:,}</b>{html.escape(kind)}</div>" for kind, n in counts.items())
    return f"<section id='census'><h2>Layers</h2><div class='census'>{cells}</div></section>"


def predictions_section(context: Context) -> str:
    """A classifier's top classes: index and softmax score, of the first input."""
    if context.logits is None:
        return ""
    name, logits = context.logits
    scores = torch.softmax(logits[0].float(), dim=0)
    top = scores.topk(min(_TOP, len(scores)))
    rows = "".join(
        f"<tr><td class='num'>{rank}</td><td class='num'>{index}</td>"
        f"<td class='num'>{score:.4f}</td></tr>"
        for rank, (score, index) in enumerate(
            zip(top.values.tolist(), top.indices.tolist(), strict=True), 1
        )
    )
    return (
        f"<section id='predictions'><h2>Predictions</h2><table class='predictions'>"
        "<thead><tr><th class='num'>rank</th><th class='num'>class index</th>"
        "<th class='num'>score</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p class='footer'>softmax of {html.escape(name)}'s "
        f"{len(scores)} outputs</p></section>"
    )


def cam_section(context: Context) -> str:
    """Where a classifier looks for its top classes in the first image: Grad-CAM at the
    node :func:`fxmaps.cam` chooses, one map per class."""
    batch, shown = context.batch, context.shown
    if context.logits is None or shown is None or not isinstance(batch, torch.Tensor):
        return ""
    scores = context.logits[1][0].float()
    classes = scores.topk(min(_CAM_CLASSES, len(scores))).indices.tolist()
    images = batch[:1].expand(len(classes), *batch.shape[1:])
    try:
        result = cam(context.graph, images, classes)
    except InputError as err:  # a model cam cannot cut (say why, on the page)
        return (
            "<section id='cam'><h2>Where the model looks</h2><p class='note'>No class "
            f"activation maps for this model: {html.escape(one_line(err))}</p></section>"
        )
    figure = plot_cam(result, shown[:1].expand(len(classes), *shown.shape[1:]), ncols=len(classes))
    caption = (
        f"Grad-CAM at {result.layer} for the top {len(classes)} classes "
        f"({', '.join(str(c) for c in classes)}) of the first input"
    )
    picture = _figure(result.layer, "cam", "class activation maps", figure_uri(figure), caption)
    return f"<section id='cam'><h2>Where the model looks</h2>{picture}</section>"


def graph_view_section(context: Context) -> str:
    """The graph, collapsed by blocks and whole (see :mod:`fxmaps.report.graph_view`)."""
    return graph_section(context.graph)


def table_section(context: Context) -> str:
    graph = context.graph
    numeric = {SUMMARY_HEADERS.index(name) for name in NUMERIC_HEADERS}
    head = "".join(
        _cell("th", name, column in numeric) for column, name in enumerate(SUMMARY_HEADERS)
    )
    body = "".join(
        f"<tr data-node='{html.escape(layer.name)}'>"
        + "".join(_cell("td", cell, column in numeric) for column, cell in enumerate(row))
        + "</tr>"
        for layer, row in zip(graph.layers(), graph.summary_rows(), strict=True)
    )
    footer = "<br>".join(html.escape(line) for line in graph.summary_footer())
    return (
        f"<section id='nodes'><h2>All {len(graph)} nodes</h2><div class='tools'>"
        "<input id='node-search' type='search' placeholder='search: name, kind, type, block…' "
        "aria-label='search the nodes'>"
        f"<span id='node-count' class='hint'>{len(graph)} nodes; click a header to sort, "
        "a row to see its node</span></div>"
        f"<div class='table'><table id='node-table'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div><p class='footer'>{footer}</p></section>"
    )


def maps_section(context: Context) -> str:
    maps = context.maps
    if maps is None:
        return (
            "<section id='maps'><h2>Feature maps</h2><p class='note'>The model has no conv and "
            "no transformer block to show maps of by default; choose layers with "
            "<code>layers=</code> (<code>--layers</code>), e.g. <code>linear</code>.</p></section>"
        )
    figures = []
    for name in _drawing(list(maps), context.progress, "report: drawing maps"):
        layer = maps.layer(name)
        figure = _untitled(
            plot_feature_maps(maps, name, max_maps=context.max_maps, order="energy"),
            f"{name}  {format_shape(tuple(maps[name].shape))}",
        )
        caption = f"{name} · {layer.kind.value} · {format_shape(tuple(maps[name].shape))}"
        figures.append(_figure(layer.name, "maps", name, figure_uri(figure), caption))
    layers = f"{len(maps)} layer{'s' if len(maps) != 1 else ''}"
    return (
        f"<section id='maps'><h2>Feature maps ({layers}, up to the {context.max_maps} most "
        f"active channels of each)</h2><div class='maps'>{''.join(figures)}</div></section>"
    )


def filters_section(context: Context) -> str:
    """Every conv's filters: the first shown, the others folded. Convs of one kernel shape
    share a figure, redrawn with each one's kernels (:class:`FilterFigures`)."""
    convs = [layer for layer in context.graph.layers(["conv", "downsample"]) if drawable(layer)]
    if not convs:
        return ""
    shared = FilterFigures()
    figures = [
        _figure(
            layer.name, "filters", "filters", _filters_uri(shared, layer), f"{layer.name} · filters"
        )
        for layer in _drawing(convs, context.progress, "report: drawing filters")
    ]
    rest = ""
    if len(figures) > 1:
        rest = (
            f"<details><summary>the other {len(figures) - 1} convolutions' filters</summary>"
            f"<div class='maps'>{''.join(figures[1:])}</div></details>"
        )
    return (
        f"<section id='filters'><h2>Filters of {html.escape(convs[0].name)}</h2>"
        f"{figures[0]}{rest}</section>"
    )


SECTIONS: tuple[Callable[[Context], str], ...] = (
    input_section,
    census_section,
    predictions_section,
    cam_section,
    graph_view_section,
    table_section,
    maps_section,
    filters_section,
)
"""The page's sections, in order. A section that has nothing to show returns ``""``."""


def _filters_uri(shared: FilterFigures, layer: Layer) -> str:
    return figure_uri(shared.plot(layer, max_filters=_MAX_FILTERS), dpi=_FILTERS_DPI)


def _figure(node: str, role: str, alt: str, uri: str, caption: str) -> str:
    return (
        f"<figure data-node='{html.escape(node)}' data-role='{role}'>"
        f"<img alt='{html.escape(alt)}' src='{uri}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _cell(tag: str, text: str, numeric: bool) -> str:
    numeric_class = " class='num'" if numeric else ""
    return f"<{tag}{numeric_class}>{html.escape(text)}</{tag}>"


def _untitled(figure: Figure, label: str) -> Figure:
    """``figure`` without the title line ``label``: the page's caption says it once."""
    for axes in figure.axes:
        lines = axes.get_title().split("\n")
        if label in lines:
            axes.title.set_text("\n".join(line for line in lines if line != label))
    return figure


def _picture(shown: torch.Tensor) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 3), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    picture = shown[0, :3].permute(1, 2, 0).clamp(0, 1).numpy()
    axes.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray")
    axes.set_axis_off()
    return figure_uri(figure, tight=False)


def _drawing(items: list[Any], show: bool, description: str) -> Iterable[Any]:
    """``items`` with a progress bar that clears itself, on a terminal only."""
    return progress(items, description=description, unit="layer", show=show, leave=False)
