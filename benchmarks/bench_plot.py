"""Drawing 64 feature maps to PNG: fxmaps's one-image mosaic against one subplot per map.

The reference is what the tutorials do: ``plt.figure(figsize)``, then for each map
``plt.subplot(8, 8, i + 1)``, ``plt.imshow``, ``plt.axis("off")``, then ``savefig``.
fxmaps draws the same maps with :func:`~fxmaps.render.maps.plot_feature_maps`: one
``imshow`` of a mosaic, a label per tile. Both draw the same 64 maps of 112×112 with
the same colormap, into figures of the same size and dpi, saved with the same
``savefig`` arguments into a ``BytesIO``. Each callable runs once as warm-up; then
the approaches alternate (A, B, B, A, ...) for ``--repeat`` rounds. Target: 5x.

Cases: the figure size fxmaps picks (the mosaic pixel for pixel), the tutorials'
15×15 in, and the first again with PNG compression level 1 for both (to show what
the PNG encoder costs). "Draw only" times figure building plus ``canvas.draw()``.

    python benchmarks/bench_plot.py                 # a real conv map, 7 rounds
    python benchmarks/bench_plot.py --data random   # uniform noise instead
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import PIL
import torch
import torchvision
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tabulate import tabulate

import fxmaps
from fxmaps.render.maps import plot_feature_maps

RESULTS = Path(__file__).resolve().parent / "results"
CMAP = "viridis"


@dataclass
class Case:
    name: str
    figsize: tuple[float, float] | None  # None: the size plot_feature_maps picks
    savefig: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("fxmaps's size", None),
    Case("tutorials' size, 15×15 in", (15.0, 15.0)),
    Case("fxmaps's size, PNG compress_level=1", None, {"pil_kwargs": {"compress_level": 1}}),
]


def main() -> None:
    args = _arguments()
    maps = _maps(args.data)
    default = plot_feature_maps(maps)
    size = (float(default.get_figwidth()), float(default.get_figheight()))
    results = [_run(case, maps, size, int(default.dpi), args.repeat) for case in CASES]
    report = {
        "environment": _environment(),
        "data": args.data,
        "repeat": args.repeat,
        "cases": results,
    }
    markdown = _markdown(report)
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_plot.md").write_text(markdown)
    (args.out / "bench_plot.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_plot'}.md and .json")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        choices=("conv", "random"),
        default="conv",
        help="resnet18's conv1 map of a photo (default) or uniform noise",
    )
    parser.add_argument("--repeat", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md and .json")
    return parser.parse_args()


def _maps(data: str) -> torch.Tensor:
    """64 maps of 112×112, ``(1, 64, 112, 112)``: resnet18's conv1 of Chelsea the cat, or noise."""
    if data == "random":
        return torch.rand(1, 64, 112, 112, generator=torch.Generator().manual_seed(0))
    import skimage.data

    pixels: np.ndarray = skimage.data.chelsea()  # type: ignore[no-untyped-call]
    photo = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    photo = torch.nn.functional.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    batch = (photo - mean[:, None, None]) / std[:, None, None]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torchvision.models.resnet18()
    return fxmaps.extract(model, batch, layers=["conv1"])["conv1"]


def _subplots(maps: np.ndarray, figsize: tuple[float, float], dpi: int) -> Figure:
    """The tutorials' way: one subplot per map."""
    fig = plt.figure(figsize=figsize, dpi=dpi)
    for i, image in enumerate(maps):
        plt.subplot(8, 8, i + 1)
        plt.imshow(image, cmap=CMAP)
        plt.axis("off")
    return fig


def _mosaic(maps: torch.Tensor, figsize: tuple[float, float] | None, dpi: int) -> Figure:
    if figsize is None:
        return plot_feature_maps(maps, cmap=CMAP)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return plot_feature_maps(maps, cmap=CMAP, ax=fig.add_axes((0.01, 0.01, 0.98, 0.95)))


def _run(
    case: Case, maps: torch.Tensor, size: tuple[float, float], dpi: int, repeat: int
) -> dict[str, Any]:
    figsize = case.figsize or size
    array = maps[0].numpy()
    runs: dict[str, Callable[[], bytes]] = {
        "subplots": lambda: _saved(_subplots(array, figsize, dpi), case.savefig, close=True),
        "mosaic": lambda: _saved(_mosaic(maps, case.figsize, dpi), case.savefig),
    }
    if case is CASES[0]:
        runs["subplots, draw only"] = lambda: _drawn(_subplots(array, figsize, dpi), close=True)
        runs["mosaic, draw only"] = lambda: _drawn(_mosaic(maps, case.figsize, dpi))
    outputs = {name: run() for name, run in runs.items()}  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat):
        for name in list(runs)[:: 1 if round_ % 2 == 0 else -1]:
            start = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - start)
    return {
        "case": case.name,
        "figsize": list(figsize),
        "dpi": dpi,
        "savefig": case.savefig,
        "seconds": seconds,
        "png": {k: _png_size(v) for k, v in outputs.items() if v},
    }


def _saved(fig: Figure, savefig: dict[str, Any], *, close: bool = False) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    if close:
        plt.close(fig)
    return buffer.getvalue()


def _drawn(fig: Figure, *, close: bool = False) -> bytes:
    fig.canvas.draw()
    if close:
        plt.close(fig)
    return b""


def _png_size(png: bytes) -> dict[str, int]:
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return {"bytes": len(png), "width": width, "height": height}


def _ratio(seconds: dict[str, list[float]], reference: str, measured: str) -> tuple[float, float]:
    """Ratio of medians, and the median over rounds of each round's ratio."""
    pairs = zip(seconds[reference], seconds[measured], strict=True)
    return (
        statistics.median(seconds[reference]) / statistics.median(seconds[measured]),
        statistics.median(a / b for a, b in pairs),
    )


def _markdown(report: dict[str, Any]) -> str:
    env, first = report["environment"], report["cases"][0]["seconds"]
    encode = {
        name: statistics.median(first[name]) - statistics.median(first[f"{name}, draw only"])
        for name in ("subplots", "mosaic")
    }
    headers = ["case", "figure px", "subplots", "mosaic", "speed-up (per round)",
               "subplots PNG", "mosaic PNG"]  # fmt: skip
    return "\n".join([
        "# Plot benchmark: 64 maps of 112×112, draw + savefig(PNG) into BytesIO", "",
        f"{report['data']} maps, {report['repeat']} interleaved rounds after warm-up, medians; "
        f"matplotlib {env['matplotlib']}, Pillow {env['pillow']}, numpy {env['numpy']}, "
        f"torch {env['torch']}, Python {env['python']}, {env['cpus']} CPUs (load "
        f"{env['load']}), {env['platform']}, {env['date']}.", "",
        tabulate(_rows(report), headers=headers, tablefmt="github"), "",
        f"PNG encoding at fxmaps's size (savefig minus draw only): subplots "
        f"{encode['subplots'] * 1e3:.0f} ms, mosaic {encode['mosaic'] * 1e3:.0f} ms.", "",
    ])  # fmt: skip


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for case in report["cases"]:
        seconds, png = case["seconds"], case["png"]
        for suffix in ("", ", draw only"):
            if "mosaic" + suffix not in seconds:
                continue
            ratio, per_round = _ratio(seconds, "subplots" + suffix, "mosaic" + suffix)
            rows.append([
                case["case"] + suffix,
                "" if suffix else "{width}×{height}".format(**png["mosaic"]),
                f"{statistics.median(seconds['subplots' + suffix]) * 1e3:.0f} ms",
                f"{statistics.median(seconds['mosaic' + suffix]) * 1e3:.0f} ms",
                f"{ratio:.2f}x ({per_round:.2f}x)",
                "" if suffix else _kib(png["subplots"]),
                "" if suffix else _kib(png["mosaic"]),
            ])  # fmt: skip
    return rows


def _kib(png: dict[str, int]) -> str:
    return f"{png['bytes'] / 1024:.0f} KiB"


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


if __name__ == "__main__":
    main()
