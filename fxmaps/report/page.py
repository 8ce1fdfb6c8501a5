"""``fxmaps.report``: one self-contained HTML page about a model looking at an image.

The page holds the model and its input, the layer census, the graph as inline
SVG, the layer table, every extracted map's mosaic and the first convolution's
filters, all embedded (SVG inline, figures as base64 PNG; no scripts, fonts or
links): it opens offline, from a mail attachment or a CI artifact, with no
other files.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fxmaps.errors import FxmapsWarning, GraphvizNotFoundError
from fxmaps.extract.extractor import extract
from fxmaps.extract.maps import FeatureMaps
from fxmaps.files import atomic_path, output_file
from fxmaps.graph import ModelGraph, Selection, analyze, format_shape
from fxmaps.graph.checks import check_module
from fxmaps.render.filters import plot_filters
from fxmaps.render.graph import render_graph
from fxmaps.render.maps import plot_feature_maps
from fxmaps.render.save import save_figure
from fxmaps.render.table import NUMERIC_HEADERS, SUMMARY_HEADERS
from fxmaps.sources.images import load_image, read_image
from fxmaps.trace.inputs import ExampleInput, as_inputs, describe_inputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["report"]

_COLLAPSE_ABOVE = 150  # nodes: larger graphs are drawn with their blocks collapsed
_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 1.2rem 2rem; }
header h1 { margin: 0; font-size: 1.5rem; overflow-wrap: anywhere; }
header p { margin: .3rem 0 0; color: #c9d1e0; }
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
figure { margin: 0; } figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #4a5468; margin-top: .3rem; }
.table { overflow: auto; max-height: 70vh; border: 1px solid #e3e6ec; border-radius: 6px; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th { position: sticky; top: 0; background: #eef1f6; }
th, td { text-align: left; padding: .2rem .6rem; border-bottom: 1px solid #eceef2;
         white-space: nowrap; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
.footer { font-size: .85rem; color: #4a5468; }
.note { color: #8a4b00; background: #fff6e5; padding: .5rem .8rem; border-radius: 6px; }
.input { display: flex; gap: 1.2rem; align-items: center; } .input img { max-width: 260px; }
.input dl { display: grid; grid-template-columns: auto 1fr; gap: .2rem 1rem; margin: 0; }
.input dt { color: #4a5468; } .input dd { margin: 0; overflow-wrap: anywhere; }
"""


def report(
    model: nn.Module | ModelGraph,
    image: str | Path | torch.Tensor | ExampleInput | None,
    path: str | Path,
    *,
    layers: Selection = "conv",
    max_maps: int = 16,
    title: str | None = None,
    image_label: str | None = None,
    progress: bool = False,
    max_bytes: float | str | None = None,
    weights: str | None = None,
) -> Path:
    """Write one self-contained HTML report of ``model`` looking at ``image`` to ``path``.

    Args:
        model: The model, or its graph (re-analysed with the image for shapes).
        image: A file, a URL, ``None`` for the bundled default photo, a ready
            ``(1, C, H, W)`` tensor, or any inputs the model takes (a dict of keyword
            arguments, ``fxmaps.Inputs``, ...; the page then shows what they are).
        path: The ``.html`` file to write (atomically; its folder must exist).
        layers: Which maps to show (see :func:`fxmaps.extract`).
        max_maps: Tiles per map mosaic.
        title: The page title; the model's class name by default.
        image_label: What the page says the input is; by default the file or
            URL, the default photo's credit, or "a tensor".
        progress: Show a progress bar while the maps are drawn.
        max_bytes: The memory limit for the maps (see :func:`fxmaps.extract`).
        weights: Which weights the model has, in words, for the page's header (the
            command line says ``"random weights (untrained)"`` of a model it built
            without loading any, or names the weights file or the pretrained
            weights); left out, the page says nothing of them.

    Returns:
        The path written.

    Raises:
        OutputError: The folder of ``path`` does not exist or is not writable
            (checked before any work).
        MemoryLimitError: The maps would take more than ``max_bytes`` (by default
            half the free memory); nothing is written.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     page = report(net, torch.rand(1, 3, 16, 16), Path(folder) / "net.html")
        ...     "data:image/png;base64," in page.read_text()
        True
    """
    path = output_file(path)
    model = check_module(model.model if isinstance(model, ModelGraph) else model, "report()")
    batch, shown, source = _input(image, model)
    graph = analyze(model, batch)
    maps = extract(graph, batch, layers=layers, max_bytes=max_bytes)
    sections = [
        _input_section(shown, image_label or source, batch, graph),
        _census_section(graph),
        _graph_section(graph),
        _table_section(graph),
        _maps_section(maps, max_maps, progress),
        _filters_section(graph),
    ]
    _write(path, _page(title or type(model).__name__, graph, sections, weights))
    return path


def _input(image: Any, model: nn.Module) -> tuple[Any, torch.Tensor | None, str]:
    """What to run, the picture to show of it (if it is an image), and what it is."""
    if not isinstance(image, (str, Path, torch.Tensor)) and image is not None:
        inputs = as_inputs(image, model, argument="image")
        return inputs, None, describe_inputs(inputs) if inputs is not None else ""
    if isinstance(image, torch.Tensor):
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        low, high = batch.amin(dim=(2, 3), keepdim=True), batch.amax(dim=(2, 3), keepdim=True)
        return batch, (batch - low) / (high - low).clamp_min(1e-12), "a tensor"
    source = (
        "the default photo (Chelsea the cat, scikit-image, CC0)" if image is None else str(image)
    )
    opened = read_image(image)  # once: a URL is downloaded once
    return load_image(opened), load_image(opened, normalize=False), source


def _input_section(shown: torch.Tensor | None, source: str, batch: Any, graph: ModelGraph) -> str:
    facts = {
        "model": f"{type(graph.model).__name__}, "
        f"{graph.total_params:,} parameters in {len(graph)} graph nodes",
        "input": source,
    }
    if isinstance(batch, torch.Tensor):
        facts["tensor"] = f"{format_shape(tuple(batch.shape))}, {batch.dtype}".replace("torch.", "")
    if graph.eager:
        facts["ran as Python"] = ", ".join(region.name for region in graph.eager)
    rows = "".join(f"<dt>{key}</dt><dd>{html.escape(value)}</dd>" for key, value in facts.items())
    picture = "" if shown is None else f"<img alt='the input image' src='{_picture(shown)}'>"
    return (
        f"<section><h2>Model and input</h2><div class='input'>"
        f"{picture}<dl>{rows}</dl></div></section>"
    )


def _picture(shown: torch.Tensor) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 3), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    picture = shown[0, :3].permute(1, 2, 0).clamp(0, 1).numpy()
    axes.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray")
    axes.set_axis_off()
    return _png(figure)


def _census_section(graph: ModelGraph) -> str:
    counts = {kind: n for kind, n in graph.info().items() if n and kind != "nodes"}
    cells = "".join(f"<div><b>{n:,}</b>{html.escape(kind)}</div>" for kind, n in counts.items())
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


def _table_section(graph: ModelGraph) -> str:
    numeric = {SUMMARY_HEADERS.index(name) for name in NUMERIC_HEADERS}
    head = "".join(
        f"<th class='num'>{html.escape(name)}</th>"
        if column in numeric
        else f"<th>{html.escape(name)}</th>"
        for column, name in enumerate(SUMMARY_HEADERS)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{html.escape(cell)}</td>"
            if column in numeric
            else f"<td>{html.escape(cell)}</td>"
            for column, cell in enumerate(row)
        )
        + "</tr>"
        for row in graph.summary_rows()
    )
    footer = "<br>".join(html.escape(line) for line in graph.summary_footer())
    return (
        f"<section><h2>All {len(graph)} nodes</h2><div class='table'><table>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        f"<p class='footer'>{footer}</p></section>"
    )


def _maps_section(maps: FeatureMaps, max_maps: int, progress: bool) -> str:
    figures = []
    for name in _progress(list(maps), progress, "report: drawing maps"):
        layer = maps.layer(name)
        figure = plot_feature_maps(maps, name, max_maps=max_maps, order="energy")
        caption = f"{name} · {layer.kind.value} · {format_shape(tuple(maps[name].shape))}"
        figures.append(
            f"<figure><img alt='{html.escape(name)}' src='{_png(figure)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    layers = f"{len(maps)} layer{'s' if len(maps) != 1 else ''}"
    return (
        f"<section><h2>Feature maps ({layers}, up to the {max_maps} most active channels "
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


def _page(name: str, graph: ModelGraph, sections: list[str], weights: str | None) -> str:
    kind = type(graph.model).__name__
    facts = [kind] if kind != name else []
    facts += [weights] if weights else []
    facts += [f"{len(graph)} nodes", f"{graph.total_params:,} parameters", "made by fxmaps"]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(name)}: fxmaps report</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{html.escape(name)}</h1><p>{html.escape(' · '.join(facts))}</p></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    save_figure(figure, buffer)  # the same pixels as savefig, encoded fast
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _progress(items: list[str], enabled: bool, description: str) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit="layer", leave=False)


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
