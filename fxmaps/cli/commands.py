"""What each ``fxmaps`` command does, on top of the public API. Files are written whole
(a temporary file, then a rename) into folders that must exist."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torchvision

from fxmaps._files import atomic_path, output_file, output_folder
from fxmaps.analyze import analyze
from fxmaps.bench import benchmark_extraction
from fxmaps.errors import DeviceError, OptionError
from fxmaps.extract import extract
from fxmaps.images import load_image
from fxmaps.render.filters import plot_filters
from fxmaps.render.graph import render_graph, save_graph
from fxmaps.render.maps import plot_feature_maps
from fxmaps.render.report import report as write_report
from fxmaps.zoo import LoadedModel, load_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bench", "demo", "filters", "graph", "maps", "report", "summary"]


def summary(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    example = None if args.no_input else torch.randn(args.batch, *_size(args, loaded))
    print(analyze(loaded.model, example, train=args.train).summary(args.kinds))
    return 0


def graph(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    example = torch.randn(1, *_size(args, loaded))
    analysed = analyze(loaded.model, example, train=args.train)
    collapse = int(args.collapse) if str(args.collapse).isdigit() else args.collapse
    drawing = render_graph(analysed, collapse=collapse, show_shapes=not args.no_shapes,
                           rankdir=args.rankdir)  # fmt: skip
    print(f"wrote {save_graph(drawing, output_file(args.output))}")
    return 0


def maps(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    folder = output_folder(args.output)
    image = _image(args, loaded)
    extracted = extract(loaded.model, image, layers=args.layers)
    from tqdm import tqdm

    for name in tqdm(list(extracted), desc="drawing maps", unit="layer", leave=False):
        figure = plot_feature_maps(extracted, name, max_maps=args.max_maps, order=args.order)
        _save_figure(figure, folder / f"{name}.png")
    print(f"wrote {len(extracted)} maps to {folder}")
    return 0


def filters(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    analysed = analyze(loaded.model)
    layer = analysed[args.layer] if args.layer else _first_conv(analysed)
    figure = plot_filters(layer, max_filters=args.max_filters, mode=args.mode)
    print(f"wrote {_save_figure(figure, output_file(args.output))}")
    return 0


def report(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    path = output_file(args.output)
    write_report(loaded.model, _image(args, loaded), path, layers=args.layers,
                 max_maps=args.max_maps, title=args.model, progress=True)  # fmt: skip
    print(f"wrote {path}")
    return 0


def bench(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {args.device}: no CUDA device here; use --device cpu")
    inputs = torch.randn(args.batch, *_size(args, loaded), device=device)
    result = benchmark_extraction(loaded.model.to(device), inputs, layers=args.layers,
                                  repeat=args.repeat, name=args.model)  # fmt: skip
    print(result.table())
    if args.json:
        result.save_json(output_file(args.json))
        print(f"wrote {args.json}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """resnet18 looking at the bundled photo: graph, maps, filters and report in one folder."""
    folder = args.output
    folder.mkdir(parents=True, exist_ok=True)  # the demo's own default folder may be new
    loaded = load_model("resnet18")
    image = load_image()
    analysed = analyze(loaded.model, image)
    written = [save_graph(render_graph(analysed), folder / "graph.svg")]
    extracted = extract(analysed, image, layers="conv")
    maps_folder = folder / "maps"
    maps_folder.mkdir(exist_ok=True)
    for name in extracted:
        _save_figure(
            plot_feature_maps(extracted, name, max_maps=32, order="energy"),
            maps_folder / f"{name}.png",
        )
    written.append(maps_folder)
    written.append(_save_figure(plot_filters(_first_conv(analysed)), folder / "filters.png"))
    written.append(write_report(analysed, None, folder / "report.html", title="resnet18"))
    print(analysed.summary("conv"))
    print("\nwrote " + ", ".join(str(p) for p in written))
    print(f"open {folder / 'report.html'} in a browser to see it all")
    return 0


def _size(args: argparse.Namespace, loaded: LoadedModel) -> tuple[int, ...]:
    return tuple(args.input_size) if args.input_size else loaded.input_size


def _image(args: argparse.Namespace, loaded: LoadedModel) -> torch.Tensor:
    size = _size(args, loaded)
    weights = None
    if str(args.weights) == "DEFAULT" and ":" not in args.model:
        weights = torchvision.models.get_model_weights(args.model).DEFAULT
    image = load_image(args.image, size=size[-1], weights=weights)
    if size[0] == 1:  # a grayscale model
        image = image.mean(dim=1, keepdim=True)
    return image


def _first_conv(analysed: Any) -> Any:
    convs = analysed.layers("conv")
    if not convs:
        raise OptionError(f"{type(analysed.model).__name__} has no conv layer to draw filters of")
    return convs[0]


def _save_figure(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png")
    return path
