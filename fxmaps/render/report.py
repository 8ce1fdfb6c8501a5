"""``fxmaps.report``: one self-contained HTML page about a model looking at an image.

The page holds the input photo, the layer census, the graph as inline SVG, the
layer table, every extracted map's mosaic and the first convolution's filters,
all embedded (SVG inline, figures as base64 PNG): it opens offline, from a
mail attachment or a CI artifact, with no other files.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tabulate import tabulate
from torch import nn

from fxmaps._files import atomic_path, output_file
from fxmaps.analyze import analyze
from fxmaps.errors import FxmapsWarning, GraphvizNotFoundError
from fxmaps.extract import extract
from fxmaps.graph import SUMMARY_HEADERS, ModelGraph, format_shape
from fxmaps.images import load_image
from fxmaps.maps import FeatureMaps
from fxmaps.render.filters import plot_filters
from fxmaps.render.graph import render_graph
from fxmaps.render.maps import plot_feature_maps
from fxmaps.select import Selection

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["report"]

_COLLAPSE_ABOVE = 150  # nodes: larger graphs are drawn with their blocks collapsed
_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 1.2rem 2rem; }
header h1 { margin: 0; font-size: 1.5rem; } header p { margin: .3rem 0 0; color: #c9d1e0; }
main { max-width: 1200px; margin: 0 auto; padding: 1rem 2rem 3rem; }
section { background: #fff; border-radius: 8px; padding: 1rem 1.4rem; margin: 1.2rem 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 1.15rem; margin: .2rem 0 .8rem; }
.census { display: flex; flex-wrap: wrap; gap: .6rem; }
.census div { background: #eef1f6; border-radius: 6px; padding: .4rem .8rem; }
.census b { display: block; font-size: 1.3rem; }
.graph { overflow: auto; max-height: 80vh; border: 1px solid #e3e6ec; border-radius: 6px; }
.graph svg { display: block; margin: auto; }
.maps { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1rem; }
figure { margin: 0; } figure img { width: 100%; height: auto; image-rendering: pixelated; }
figcaption { font-size: .85rem; color: #4a5468; margin-top: .3rem; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { text-align: left; padding: .2rem .6rem; border-bottom: 1px solid #eceef2; }
td:nth-child(5) { text-align: right; font-variant-numeric: tabular-nums; }
details summary { cursor: pointer; font-weight: 600; }
.note { color: #8a4b00; background: #fff6e5; padding: .5rem .8rem; border-radius: 6px; }
.input { display: flex; gap: 1.2rem; align-items: center; } .input img { max-width: 260px; }
"""


def report(
    model: nn.Module | ModelGraph,
    image: str | Path | torch.Tensor | None,
    path: str | Path,
    *,
    layers: Selection = "conv",
    max_maps: int = 16,
    title: str | None = None,
    progress: bool = False,
) -> Path:
    """Write one self-contained HTML report of ``model`` looking at ``image`` to ``path``.

    Args:
        model: The model, or its graph (re-analysed with the image for shapes).
        image: A file, a URL, ``None`` for the bundled default photo, or a ready
            ``(1, 3, H, W)`` tensor.
        path: The ``.html`` file to write (atomically; its folder must exist).
        layers: Which maps to show (see :func:`fxmaps.extract`).
        max_maps: Tiles per map mosaic.
        title: The page title; the model's class name by default.
        progress: Show a progress bar while the maps are drawn.

    Returns:
        The path written.
    """
    path = output_file(path)
    model = model.model if isinstance(model, ModelGraph) else model
    batch, shown, source = _input(image)
    graph = analyze(model, batch)
    maps = extract(graph, batch, layers=layers)
    name = title or type(model).__name__
    sections = [
        _input_section(shown, source, batch),
        _census_section(graph),
        _graph_section(graph),
        _maps_section(maps, max_maps, progress),
        _filters_section(graph),
        _table_section(graph),
    ]
    _write(path, _page(name, graph, sections))
    return path


def _input(image: str | Path | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    if isinstance(image, torch.Tensor):
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        low, high = batch.amin(dim=(2, 3), keepdim=True), batch.amax(dim=(2, 3), keepdim=True)
        return batch, (batch - low) / (high - low).clamp_min(1e-12), "a tensor"
    source = (
        "the default photo (Chelsea the cat, scikit-image, CC0)" if image is None else str(image)
    )
    return load_image(image), load_image(image, normalize=False), source


def _input_section(shown: torch.Tensor, source: str, batch: torch.Tensor) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 3), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(shown[0, :3].permute(1, 2, 0).clamp(0, 1).numpy())
    axes.set_axis_off()
    return (
        f"<section><h2>Input</h2><div class='input'><img alt='input' src='{_png(figure)}'>"
        f"<p>{html.escape(source)}<br>tensor {format_shape(tuple(batch.shape))}, "
        f"{batch.dtype}</p></div></section>"
    )


def _census_section(graph: ModelGraph) -> str:
    cells = "".join(
        f"<div><b>{count:,}</b>{html.escape(kind)}</div>" for kind, count in graph.info().items()
    )
    return f"<section><h2>Layers</h2><div class='census'>{cells}</div></section>"


def _graph_section(graph: ModelGraph) -> str:
    collapse = "blocks" if len(graph) > _COLLAPSE_ABOVE else "none"
    try:
        svg = render_graph(graph, collapse=collapse).pipe(format="svg").decode()
    except GraphvizNotFoundError as err:
        warnings.warn(f"the report has no graph drawing: {err}", FxmapsWarning, stacklevel=4)
        return f"<section><h2>Graph</h2><p class='note'>{html.escape(str(err))}</p></section>"
    svg = svg[svg.index("<svg") :]
    note = " (blocks collapsed)" if collapse == "blocks" else ""
    return f"<section><h2>Graph{note}</h2><div class='graph'>{svg}</div></section>"


def _maps_section(maps: FeatureMaps, max_maps: int, progress: bool) -> str:
    figures = []
    for name in _progress(list(maps), progress, "drawing maps"):
        layer = maps.layer(name)
        figure = plot_feature_maps(maps, name, max_maps=max_maps, order="energy")
        caption = f"{name} · {layer.kind.value} · {format_shape(tuple(maps[name].shape))}"
        figures.append(
            f"<figure><img alt='{html.escape(name)}' src='{_png(figure)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return (
        f"<section><h2>Feature maps ({len(maps)} layers, the {max_maps} most active channels "
        f"of each)</h2><div class='maps'>{''.join(figures)}</div></section>"
    )


def _filters_section(graph: ModelGraph) -> str:
    convs = graph.layers("conv")
    if not convs or convs[0].module is None:
        return ""
    figure = plot_filters(convs[0])
    return (
        f"<section><h2>Filters of {html.escape(convs[0].name)}</h2>"
        f"<figure><img alt='filters' src='{_png(figure)}'></figure></section>"
    )


def _table_section(graph: ModelGraph) -> str:
    table = tabulate(graph.summary_rows(), headers=list(SUMMARY_HEADERS), tablefmt="html")
    footer = "<br>".join(html.escape(line) for line in graph.summary_footer())
    return (
        f"<section><details><summary>All {len(graph)} nodes</summary>{table}"
        f"<p>{footer}</p></details></section>"
    )


def _page(name: str, graph: ModelGraph, sections: list[str]) -> str:
    params = f"{graph.total_params:,} parameters"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(name)}: fxmaps report</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{html.escape(name)}</h1><p>{len(graph)} nodes · {params} · "
        f"made by fxmaps</p></header><main>{''.join(sections)}</main></body></html>\n"
    )


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _progress(items: list[str], enabled: bool, description: str) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="layer", leave=False)


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
