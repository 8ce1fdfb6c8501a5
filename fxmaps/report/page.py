"""``fxmaps.report``: one self-contained, interactive HTML page about a model looking at an image.

The page holds the model and its input, the layer census, a classifier's top
predictions, the graph as inline SVG (blocks collapsed, a click opens one; zoom
and pan), a searchable, sortable table of every node, every extracted map's
mosaic and every conv's filters. Clicking a node of the graph or a row of the
table, or opening the page at ``report.html#node=<name>``, opens a panel with
what fxmaps knows of that node and what it produced. Everything is embedded
(SVG inline, figures as WebP or palette PNG ``data:`` URIs, a small script and
style sheet of fxmaps's own; no fonts, links or network requests): it opens
offline, from a mail attachment or a CI artifact, with no other files.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fxmaps.extract.extractor import extract
from fxmaps.extract.maps import FeatureMaps
from fxmaps.files import atomic_path, output_file
from fxmaps.graph import ModelGraph, Selection, analyze
from fxmaps.graph.checks import check_module
from fxmaps.report.choose import default_layers, logits_node
from fxmaps.report.sections import SECTIONS, Context
from fxmaps.sources.images import load_image, read_image
from fxmaps.trace.inputs import ExampleInput, as_inputs, describe_inputs

__all__ = ["report"]

_PANEL = "<aside id='node-panel' hidden aria-live='polite'></aside>"


def report(
    model: nn.Module | ModelGraph,
    image: str | Path | torch.Tensor | ExampleInput | None,
    path: str | Path,
    *,
    layers: Selection | None = None,
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
        layers: Which maps to show (see :func:`fxmaps.extract`); channels-last
            maps (transformer tokens) are drawn as spatial grids. By default every
            conv, and the output of each residual block that keeps channels last
            (a ViT encoder layer, a Swin block).
        max_maps: Tiles per map mosaic.
        title: The page title; the model's class name by default.
        image_label: What the page says the input is; by default the file or
            URL, the default photo's credit, or "a tensor".
        progress: Show a progress bar while the maps are drawn, where standard error
            is a terminal (never in a log file or a pipe: :mod:`fxmaps.progress`).
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
        ...     'data-node="2"' in page.read_text()
        True
    """
    path = output_file(path)
    model = check_module(model.model if isinstance(model, ModelGraph) else model, "report()")
    batch, shown, source = _input(image, model)
    graph = analyze(model, batch)
    context = Context(
        graph=graph,
        maps=_maps(graph, batch, layers, max_bytes),
        shown=shown,
        source=image_label or source,
        batch=batch,
        logits=_logits(graph, batch),
        max_maps=max_maps,
        progress=progress,
    )
    sections = []
    for section in SECTIONS:  # a loop, not a comprehension: warnings name the caller's line
        sections.append(section(context))
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


def _maps(
    graph: ModelGraph, batch: Any, layers: Selection | None, max_bytes: float | str | None
) -> FeatureMaps | None:
    """The maps to draw; ``None`` when the default chooses no layer (a model without convs)."""
    chosen = default_layers(graph) if layers is None else layers
    if isinstance(chosen, list) and not chosen:
        return None
    return extract(graph, batch, layers=chosen, spatial=True, max_bytes=max_bytes)


def _logits(graph: ModelGraph, batch: Any) -> tuple[str, torch.Tensor] | None:
    name = logits_node(graph)
    if name is None:
        return None
    return name, extract(graph, batch, layers=[name])[name]


def _page(name: str, graph: ModelGraph, sections: list[str], weights: str | None) -> str:
    kind = type(graph.model).__name__
    facts = [kind] if kind != name else []
    facts += [weights] if weights else []
    facts += [f"{len(graph)} nodes", f"{graph.total_params:,} parameters", "made by fxmaps"]
    static = resources.files("fxmaps.report") / "static"
    style = (static / "report.css").read_text(encoding="utf-8")
    script = (static / "report.js").read_text(encoding="utf-8")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(name)}: fxmaps report</title><style>{style}</style></head><body>"
        f"<header><h1>{html.escape(name)}</h1><p>{html.escape(' · '.join(facts))}</p></header>"
        f"<main>{''.join(sections)}</main>{_PANEL}<script>{script}</script></body></html>\n"
    )


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
