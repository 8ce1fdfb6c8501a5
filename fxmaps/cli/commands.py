"""What each ``fxmaps`` command does, on top of the public API.

Output locations are checked before any work. Files are written whole (a
temporary file, then a rename) into folders that must exist; the files of
``maps`` and ``stats`` are a set (``fxmaps.files.file_set``): a new folder is
filled under a temporary name and renamed when every file is written, an existing
one gets its new files moved in together at the end. An error, SIGINT or SIGTERM
never leaves partial output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torchvision

from fxmaps.attribute import cam as class_maps
from fxmaps.bench.extraction import benchmark_extraction
from fxmaps.bench.gate import REGRESSION_EXIT_CODE, compare_ratios
from fxmaps.bench.harness import write_markdown
from fxmaps.bench.record import check_comparable, describe_selection, read_record
from fxmaps.errors import DeviceError, MemoryLimitError, OptionError, OutputError
from fxmaps.extract.extractor import extract
from fxmaps.extract.memory import byte_size, memory_limit
from fxmaps.files import (
    file_set,
    node_files,
    output_file,
    output_folder,
    write_index,
)
from fxmaps.graph import analyze
from fxmaps.progress import on_terminal, progress
from fxmaps.render.cam import plot_cam
from fxmaps.render.filters import plot_filters
from fxmaps.render.graph import render_graph, save_graph
from fxmaps.render.maps import plot_feature_maps
from fxmaps.render.save import save_figure
from fxmaps.render.stats import plot_channel_stats, plot_top_images
from fxmaps.report.page import report as write_report
from fxmaps.sources.datasets import image_dataset
from fxmaps.sources.images import load_image
from fxmaps.sources.models import LoadedModel, load_model
from fxmaps.stats.channels import channel_stats
from fxmaps.stats.world import share_weights
from fxmaps.trace.inputs import Inputs, as_inputs, map_tensors

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fxmaps.extract.maps import FeatureMaps
    from fxmaps.stats.channels import ChannelStats

__all__ = ["bench", "demo", "filters", "graph", "maps", "report", "seed", "stats", "summary"]

_DEFAULT_PHOTO = "the bundled default photo (Chelsea the cat, scikit-image, CC0)"


def summary(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    example = None if args.no_input else _example(args, loaded, args.batch)
    print(analyze(loaded.model, example, train=args.train).summary(args.kinds))
    return 0


def graph(args: argparse.Namespace) -> int:
    path = output_file(args.output)
    loaded = load_model(args.model, weights=args.weights)
    analysed = analyze(loaded.model, _example(args, loaded, 1), train=args.train)
    collapse = int(args.collapse) if str(args.collapse).isdigit() else args.collapse
    drawing = render_graph(analysed, collapse=collapse, show_shapes=not args.no_shapes,
                           rankdir=args.rankdir)  # fmt: skip
    print(f"wrote {save_graph(drawing, path)}")
    return 0


def maps(args: argparse.Namespace) -> int:
    _check_folder(args.output)
    loaded = load_model(args.model, weights=args.weights)
    extracted = extract(loaded.model, _image(args, loaded), layers=args.layers,
                        max_bytes=args.max_bytes, channels=_channels(args.channels),
                        reduce=args.reduce, dtype=args.dtype)  # fmt: skip
    with file_set(args.output) as folder:
        _draw_maps(
            extracted, folder, max_maps=args.max_maps, order=args.order, weights=loaded.weights
        )
    print(f"wrote {len(extracted)} maps to {args.output}")
    return 0


def filters(args: argparse.Namespace) -> int:
    path = output_file(args.output)
    loaded = load_model(args.model, weights=args.weights)
    analysed = analyze(loaded.model)
    layer = analysed[args.layer] if args.layer else _first_conv(analysed)
    figure = plot_filters(
        layer, max_filters=args.max_filters, mode=args.mode, notes=[loaded.weights]
    )
    print(f"wrote {_save_figure(figure, path)}")
    return 0


def report(args: argparse.Namespace) -> int:
    path = output_file(args.output)
    loaded = load_model(args.model, weights=args.weights)
    given, label = _image(args, loaded), args.image or _DEFAULT_PHOTO
    if isinstance(given, torch.Tensor) and given.dim() == 3:  # a signal (1, C, L), not a photo
        label = f"a random signal {tuple(given.shape)}"
        given = Inputs((given,))  # the page draws no picture of it
    write_report(loaded.model, given, path, layers=args.layers,
                 max_maps=args.max_maps, title=args.model, image_label=label, progress=True,
                 max_bytes=args.max_bytes, weights=loaded.weights)  # fmt: skip
    print(f"wrote {path}")
    return 0


def cam(args: argparse.Namespace) -> int:
    """Class activation maps of one image, a panel per method."""
    path = output_file(args.output)
    loaded = load_model(args.model, weights=args.weights)
    image = _image(args, loaded)
    analysed = analyze(loaded.model, image)
    results = [
        class_maps(analysed, image, args.target, method=method, layer=args.layer)
        for method in args.method
    ]
    figure = plot_cam(results, image, labels=_labels(args))
    print(f"{results[0].method} at {results[0].layer}, class {results[0].targets[0]}")
    print(f"wrote {_save_figure(figure, path)}")
    return 0


def _labels(args: argparse.Namespace) -> list[str] | None:
    """The class names of torchvision's DEFAULT weights, when those are loaded."""
    if str(args.weights) != "DEFAULT" or ":" in args.model:
        return None
    meta = torchvision.models.get_model_weights(args.model).DEFAULT.meta
    categories = meta.get("categories")
    return list(categories) if categories else None


def bench(args: argparse.Namespace) -> int:
    json_path = output_file(args.json) if args.json else None
    markdown_path = output_file(args.markdown) if args.markdown else None
    baseline = read_record(args.baseline) if args.baseline else None
    selection = describe_selection(args.layers)
    if baseline is not None:
        check_comparable(baseline, args.baseline, model=args.model, layer_selection=selection)
    device = _device(args.device)
    loaded = load_model(args.model, weights=args.weights)
    inputs = map_tensors(_example(args, loaded, args.batch), lambda t: t.to(device))
    given = as_inputs(inputs, loaded.model, argument="inputs")
    if baseline is not None and given is not None:
        shapes = [list(t.shape) for t in given.tensors()]
        check_comparable(baseline, args.baseline, input_shapes=shapes)
    terminal = on_terminal()  # a progress line only where someone watches it
    with _threads(args.threads):
        result = benchmark_extraction(loaded.model.to(device), inputs, layers=args.layers,
                                      repeat=args.repeat, name=args.model,
                                      max_bytes=args.max_bytes,
                                      on_round=_round_line if terminal else None)  # fmt: skip
    if terminal:
        print("\r\033[K", end="", file=sys.stderr, flush=True)  # the progress line, cleared
    verdict = None
    if baseline is not None:
        ratio = result.to_json()["ratio"]["median"]
        verdict = compare_ratios(ratio, baseline["ratio"]["median"], tolerance=args.tolerance)
    table = result.table() + (f"\n\n{verdict.line()}" if verdict else "")
    print(table)
    for path, write in ((json_path, result.save_json), (markdown_path, _markdown_writer(table))):
        if path:
            write(path)
            print(f"wrote {path}")
    return REGRESSION_EXIT_CODE if verdict and verdict.regressed else 0


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` (None: left as they are) for the block."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _markdown_writer(text: str) -> Callable[[Path], object]:
    return lambda path: write_markdown(path, text)


def demo(args: argparse.Namespace) -> int:
    """resnet18 looking at the bundled photo: graph, maps, filters and report in one folder."""
    folder = args.output
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"cannot write into {str(folder)!r}: it is a file, not a folder", path=str(folder)
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)  # the demo's own default folder may be new
    except OSError as err:
        raise OutputError(
            f"cannot create {str(folder)!r}: {err.strerror or err}", path=str(folder)
        ) from err
    loaded = load_model("resnet18")
    image = load_image()
    analysed = analyze(loaded.model, image)
    save_graph(render_graph(analysed), folder / "graph.svg")
    extracted = extract(analysed, image, layers="conv")
    with file_set(folder / "maps") as maps_folder:
        _draw_maps(extracted, maps_folder, max_maps=32, order="energy", weights=loaded.weights)
    first = _first_conv(analysed)
    _save_figure(plot_filters(first, notes=[loaded.weights]), folder / "filters.png")
    write_report(analysed, None, folder / "report.html", title="resnet18", progress=True,
                 weights=loaded.weights)  # fmt: skip
    methods = ("gradcam", "gradcam++", "layercam", "eigencam")
    results = [class_maps(analysed, image, method=method) for method in methods]
    _save_figure(plot_cam(results, image), folder / "cam.png")
    print(analysed.summary("conv"))
    print(f"\nresnet18 with {loaded.weights}: these filters and maps are those of a")
    print("network that has learned nothing; fxmaps maps resnet18 --weights DEFAULT -o maps/")
    print("shows a trained one's (it downloads the weights)")
    print(f"\nwrote into {folder}:")
    print("  graph.svg     the annotated graph")
    print(f"  maps/         {len(extracted)} feature-map mosaics, one PNG a conv layer")
    print(f"  filters.png   the filters of {first.name}")
    print("  report.html   all of it on one page")
    print(f"  cam.png       where it looks for class {results[0].targets[0]}, four methods")
    print(f"open {folder / 'report.html'} in a browser to see it all")
    return 0


def stats(args: argparse.Namespace) -> int:
    """Per-channel statistics over a dataset; under torchrun each process reads a shard.
    Its files appear together or not at all (as for ``maps``: ``fxmaps.files.file_set``)."""
    _check_folder(args.output)
    loaded = load_model(args.model, weights=args.weights)
    _check_input_memory((args.batch_size, *_size(args, loaded)), args)  # a batch of the data
    dataset = image_dataset(args.data, _size(args, loaded))
    rank = share_weights(loaded.model)  # random or downloaded weights: rank 0's for all
    result = channel_stats(loaded.model, dataset, layers=args.layers, batch_size=args.batch_size,
                           num_workers=args.workers, topk=args.topk, train=args.train,
                           progress=True)  # fmt: skip
    if rank != 0:
        return 0
    with file_set(args.output) as folder:
        written = _draw_stats(result, dataset, folder)
    for name, dead in result.dead().items():
        print(f"{name}: {len(dead)} dead channels {dead[:10]}{' ...' if len(dead) > 10 else ''}")
    print(f"{result}; wrote {len(written)} files to {args.output}")
    return 0


def seed(value: int) -> None:
    """Seed Python's, NumPy's and torch's generators (``--seed``): the same random weights and
    inputs on every run."""
    import random

    import numpy as np

    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _channels(values: list[str] | None) -> Any:
    """``--channels``: ``top:K`` and slices (``0:16``, ``::2``) as ``extract`` takes them, or
    indices; other text goes through as it is, for ``extract`` to explain."""
    if not values:
        return None
    if len(values) == 1 and not values[0].startswith("top:") and ":" in values[0]:
        parts = values[0].split(":")
        if len(parts) <= 3 and all(p.strip().lstrip("-").isdigit() or not p for p in parts):
            return slice(*(int(p) if p else None for p in parts))
    if all(value.lstrip("-").isdigit() for value in values):
        return [int(value) for value in values]
    return values[0] if len(values) == 1 else values


def _draw_stats(result: ChannelStats, dataset: Any, folder: Path) -> list[Path]:
    """Write ``stats.pt``, each node's top images, the index and the overview into ``folder``."""
    written = [result.save(folder / "stats.pt")]
    files = node_files(result, "_top.png")  # node names are not paths: see node_files
    names = list(result)
    for name in progress(names, description="drawing top images", unit="layer", leave=False):
        figure = plot_top_images(result, dataset, name)
        written.append(_save_figure(figure, folder / files[name]))
    written.append(write_index(folder, files))
    written.append(_save_figure(plot_channel_stats(result), folder / "channel_stats.png"))
    return written


def _round_line(done: int, total: int) -> None:
    """``bench: round 3 of 9`` on one line of the terminal, rewritten each round."""
    print(f"\rbench: round {done} of {total}", end="", file=sys.stderr, flush=True)


def _device(text: str) -> torch.device:
    """``--device`` as a device this machine has; else an error listing those it has."""
    valid = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        valid.append("mps")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise OptionError(
            f"--device {text}: not a device; use one of {', '.join(valid)}",
            option="device",
            value=text,
            valid=tuple(valid),
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        there = "no CUDA device here; use --device cpu"
    elif device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        there = (
            f"{device} is not among the {count} CUDA devices here; use one of {', '.join(valid)}"
        )
    elif device.type == "mps" and "mps" not in valid:
        there = "no MPS device here; use --device cpu"
    else:
        return device
    raise DeviceError(f"--device {text}: {there}", expected="cpu", got=str(device))


def _size(args: argparse.Namespace, loaded: LoadedModel) -> tuple[int, ...]:
    return tuple(args.input_size) if args.input_size else loaded.input_size


def _example(args: argparse.Namespace, loaded: LoadedModel, batch: int) -> Any:
    """Random inputs of ``--input-size``; else what the model's factory gave; else random
    inputs of the model's usual size."""
    if loaded.example is not None and not args.input_size:
        return loaded.example
    shape = (batch, *_size(args, loaded))
    _check_input_memory(shape, args)
    return torch.randn(shape)


def _check_input_memory(shape: tuple[int, ...], args: argparse.Namespace) -> None:
    """Refuse an example input larger than fxmaps's share of free memory, before it is made
    (one float32 tensor of ``shape``; its maps are checked later, by ``extract``)."""
    needed = math.prod(shape) * 4
    found = memory_limit(torch.device("cpu"))
    if found is None or needed <= found[0]:
        return
    limit, why = found
    option = "--batch" if "batch" in args else "--batch-size" if "batch_size" in args else ""
    batch = f" with {option} {shape[0]}" if option else ""
    raise MemoryLimitError(
        f"--input-size {' '.join(map(str, shape[1:]))}{batch} makes an example input of "
        f"{byte_size(needed)} ({'×'.join(map(str, shape))} float32), more than the limit of "
        f"{byte_size(limit)} ({why}); use a smaller --input-size"
        + (f" or {option}" if option else ""),
        needed=needed,
        limit=limit,
    )


def _image(args: argparse.Namespace, loaded: LoadedModel) -> Any:
    """The image asked for (the default photo without one), shaped for the model; or,
    without ``--image``, what the model's factory gave as its example input. Two numbers
    of ``--input-size`` (``C L``) are a model of signals: a random signal ``(1, C, L)``."""
    if loaded.example is not None and args.image is None and not args.input_size:
        return loaded.example
    size = _size(args, loaded)
    if len(size) == 2:  # (C, L): a model of signals, not of photos
        return _signal(args, size)
    _check_input_memory((1, 3, size[-1], size[-1]), args)  # the photo, square, as load_image
    weights = None
    if str(args.weights) == "DEFAULT" and ":" not in args.model:
        weights = torchvision.models.get_model_weights(args.model).DEFAULT
    try:
        image = load_image(args.image, size=size[-1], weights=weights)
    except OptionError as err:
        if err.option != "size":
            raise
        given = " ".join(map(str, size))
        raise OptionError(f"--input-size {given}: {err}", option="input-size", value=size,
                          valid=err.valid) from err  # fmt: skip
    if size[0] == 1:  # a grayscale model
        image = image.mean(dim=1, keepdim=True)
    return image


def _signal(args: argparse.Namespace, size: tuple[int, ...]) -> torch.Tensor:
    """A random signal ``(1, C, L)`` for ``--input-size C L`` (``--seed`` makes it the
    same each run); a photo cannot be one."""
    if args.image is not None:
        given = " ".join(map(str, size))
        raise OptionError(
            f"--image {args.image} is a photo, and --input-size {given} asks for a signal "
            f"(N, {given.replace(' ', ', ')}); leave --image out to use a random signal, or "
            "give --input-size C H W for a model of images",
            option="image",
            value=str(args.image),
        )
    _check_input_memory((1, *size), args)
    return torch.randn(1, *size)


def _first_conv(analysed: Any) -> Any:
    convs = analysed.layers("conv")
    if not convs:
        raise OptionError(
            f"{type(analysed.model).__name__} has no conv layer to draw filters of",
            option="layer",
        )
    return convs[0]


def _draw_maps(
    extracted: FeatureMaps, folder: Path, *, max_maps: int, order: str, weights: str
) -> None:
    files = node_files(extracted, ".png")  # node names are not paths: see node_files
    names = list(extracted)
    for name in progress(names, description="drawing maps", unit="layer", leave=False):
        figure = plot_feature_maps(extracted, name, max_maps=max_maps, order=order, notes=[weights])
        _save_figure(figure, folder / files[name])
    write_index(folder, files)


def _check_folder(path: Path) -> None:
    """Fail early where ``path`` can be neither used nor created as a folder."""
    if path.is_dir():
        output_folder(path)
    elif path.exists():
        raise OutputError(
            f"cannot write maps into {str(path)!r}: it is a file, not a folder", path=str(path)
        )
    else:
        output_file(path)  # its parent must exist and be writable


def _save_figure(figure: Figure, path: Path) -> Path:
    save_figure(figure, path)  # written whole; PNGs encoded fast (see save_figure)
    return path
