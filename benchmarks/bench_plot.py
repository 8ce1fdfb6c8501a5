"""Drawing 64 feature maps to PNG: fxmaps's one-image mosaic against one subplot per map.

The reference is the tutorials' code, kept as it is but without pyplot (a ``Figure``
with a ``FigureCanvasAgg``, as fxmaps draws): a 15×15 in figure at the default dpi,
then for each map ``add_subplot(8, 8, i + 1)``, ``imshow(map, cmap="gray")``,
``axis("off")``. fxmaps draws the same maps with
``plot_feature_maps(maps, cmap="gray")``: one image of all tiles and a label per tile.

Headline: the tutorials' figure size. fxmaps has no size option, so it draws into
``fig.add_subplot()`` of a figure of that size, as a user holding such a figure would;
it shows the mosaic at the largest whole-number scale that fits and leaves the rest
background. Second: the figure fxmaps makes by itself (the mosaic pixel for pixel),
the subplots drawn into a figure of the same size. For each size the script times

* the target, 5x: the subplots saved as the tutorials save them,
  ``fig.savefig(buffer, format="png")`` with matplotlib's defaults, and the mosaic saved as
  fxmaps's own writers save it, ``fxmaps.save_figure(fig, buffer)`` (the same pixels, PNG
  encoded with zlib level 1 in the fewest channels that keep them),
* draw + ``fig.savefig(buffer, format="png")`` with matplotlib's defaults for both,
* "draw only": building the figure plus ``fig.canvas.draw()``,
* a diagnostic: the same savefig with ``pil_kwargs={"compress_level": 1}``, to show how
  much of the time is zlib.

Both ways of a row are saved with the same call (except the first row: see above), and the
script checks that their images have the same size in pixels. Every figure is built anew in
every round. Each callable runs once as warm-up (that run gives the sizes checked); then
``fxmaps.bench.harness.run_interleaved`` alternates the two ways (A, B, B, A, ...) for
``--repeat`` rounds. Reported: medians, and the median over rounds of each round's
ratio (subplots / mosaic), which cancels slow drifts of a busy machine.

    python benchmarks/bench_plot.py                 # a real conv map, 7 rounds
    python benchmarks/bench_plot.py --data random   # uniform noise instead
"""

from __future__ import annotations

import argparse
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import PIL
import torch
import torchvision
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import fxmaps
from fxmaps.bench.harness import (
    Environment,
    Timing,
    format_load,
    format_table,
    read_load_average,
    record_environment,
    run_interleaved,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results"
CMAP = "gray"  # the tutorials' colormap
SEED_FIGSIZE = (15.0, 15.0)
TARGET = 5.0
FAST_PNG = {"pil_kwargs": {"compress_level": 1}}
SAVE_FIGURE = "mosaic by fxmaps.save_figure"


@dataclass(frozen=True)
class Case:
    figure: str  # which figure size, as the report names it
    figsize: tuple[float, float] | None  # None: the figure plot_feature_maps makes
    savefig: dict[str, Any] | None = field(default_factory=dict)  # None: draw only
    variant: str = ""
    save_figure: bool = False  # the mosaic written by fxmaps.save_figure (subplots: savefig)

    @property
    def name(self) -> str:
        return f"{self.figure}, {self.variant}" if self.variant else self.figure


SIZES = [("tutorials' figure, 15×15 in", SEED_FIGSIZE), ("fxmaps's figure", None)]
CASES = [
    case
    for figure, figsize in SIZES
    for case in (
        Case(figure, figsize, {}, SAVE_FIGURE, save_figure=True),
        Case(figure, figsize),
        Case(figure, figsize, None, "draw only"),
        Case(figure, figsize, FAST_PNG, "PNG compress_level=1"),
    )
]


def main() -> None:
    args = _arguments()
    maps = _maps(args.data)
    own = fxmaps.plot_feature_maps(maps, cmap=CMAP)
    own_size = (float(own.get_figwidth()), float(own.get_figheight())), float(own.dpi)
    started = record_environment(
        "cpu", matplotlib=matplotlib.__version__, numpy=np.__version__, pillow=PIL.__version__
    )
    results = [_run(case, maps, own_size, args.repeat) for case in CASES]
    report = {
        "environment": started.to_json(),
        "load_after": read_load_average(),
        "data": args.data,
        "repeat": args.repeat,
        "target": TARGET,
        "cases": results,
    }
    markdown = _markdown(report)
    print(markdown)
    write_results(args.out, "bench_plot", markdown, report)
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


def _figure(figsize: tuple[float, float], dpi: float | None = None) -> Figure:
    """A pyplot-free figure; without ``dpi``, matplotlib's default, as ``plt.figure`` uses."""
    fig = Figure(figsize=figsize) if dpi is None else Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _subplots(maps: torch.Tensor, fig: Figure) -> Figure:
    """The tutorials' way: one subplot per map."""
    feature_maps = maps[0].detach().numpy()
    for i in range(len(feature_maps)):
        ax = fig.add_subplot(8, 8, i + 1)
        ax.imshow(feature_maps[i], cmap=CMAP)
        ax.axis("off")
    return fig


def _mosaic(maps: torch.Tensor, fig: Figure | None) -> Figure:
    if fig is None:
        return fxmaps.plot_feature_maps(maps, cmap=CMAP)
    return fxmaps.plot_feature_maps(maps, cmap=CMAP, ax=fig.add_subplot())


def _run(
    case: Case, maps: torch.Tensor, own: tuple[tuple[float, float], float], repeat: int
) -> dict[str, Any]:
    figsize, dpi = (case.figsize, None) if case.figsize else own
    finish = _drawn if case.savefig is None else _saver(case.savefig)
    keep = _fxmaps_saver if case.save_figure else finish
    runs: dict[str, Callable[[], tuple[int, int, int]]] = {
        "subplots": lambda: finish(_subplots(maps, _figure(figsize, dpi))),
        "mosaic": lambda: keep(_mosaic(maps, _figure(figsize, dpi) if case.figsize else None)),
    }
    outputs = {name: run() for name, run in runs.items()}  # warm-up
    sizes = {name: output[:2] for name, output in outputs.items()}
    if len(set(sizes.values())) != 1:
        raise RuntimeError(f"{case.name}: the two ways give images of different sizes: {sizes}")
    timings = run_interleaved(runs, rounds=repeat, warmup=0)  # warmed up above
    return {
        "case": case.name,
        "figure": case.figure,
        "variant": case.variant,
        "figsize": list(figsize),
        "savefig": case.savefig,
        "mosaic_writer": "fxmaps.save_figure" if case.save_figure else "savefig",
        "seconds": {name: list(timing.seconds) for name, timing in timings.items()},
        "image": {
            name: {"width": width, "height": height, "png_bytes": png_bytes}
            for name, (width, height, png_bytes) in outputs.items()
        },
    }


def _saver(savefig: dict[str, Any]) -> Callable[[Figure], tuple[int, int, int]]:
    def save(fig: Figure) -> tuple[int, int, int]:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", **savefig)
        png = buffer.getvalue()
        return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"), len(png)

    return save


def _fxmaps_saver(fig: Figure) -> tuple[int, int, int]:
    buffer = io.BytesIO()
    fxmaps.save_figure(fig, buffer)
    png = buffer.getvalue()
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"), len(png)


def _drawn(fig: Figure) -> tuple[int, int, int]:
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height(physical=True)
    return width, height, 0


def _timings(seconds: dict[str, list[float]]) -> dict[str, Timing]:
    return {name: Timing(tuple(values)) for name, values in seconds.items()}


def _ratios(seconds: dict[str, list[float]]) -> tuple[float, float]:
    """The median over rounds of each round's subplots / mosaic, and the ratio of medians."""
    timings = _timings(seconds)
    subplots, mosaic = timings["subplots"], timings["mosaic"]
    return subplots.ratio_to(mosaic), subplots.median / mosaic.median


def _markdown(report: dict[str, Any]) -> str:
    env = Environment.from_json(report["environment"])
    headers = ["case", "figure px", "subplots", "mosaic", "speed-up", "(of medians)",
               "subplots PNG", "mosaic PNG"]  # fmt: skip
    return "\n".join([
        "# Plot benchmark: 64 maps of 112×112, the tutorials' subplots against fxmaps's mosaic",
        "",
        f"{report['data']} maps, cmap gray, {report['repeat']} interleaved rounds after "
        f"warm-up, medians; speed-up is the median of per-round ratios. matplotlib "
        f"{env.extra['matplotlib']}, Pillow {env.extra['pillow']}, numpy {env.extra['numpy']}; "
        f"{env.describe()}; load average at the end {format_load(report['load_after'])}.",
        "",
        format_table(_rows(report), headers, align=["left", "left", *["right"] * 6]),
        "",
        *_notes(report),
        "",
    ])  # fmt: skip


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for case in report["cases"]:
        timings, image = _timings(case["seconds"]), case["image"]
        per_round, of_medians = _ratios(case["seconds"])
        png = case["savefig"] is not None
        rows.append([
            case["case"],
            "{width}×{height}".format(**image["mosaic"]),
            f"{timings['subplots'].median * 1e3:.0f} ms",
            f"{timings['mosaic'].median * 1e3:.0f} ms",
            f"{per_round:.2f}x",
            f"{of_medians:.2f}x",
            f"{image['subplots']['png_bytes'] / 1024:.0f} KiB" if png else "",
            f"{image['mosaic']['png_bytes'] / 1024:.0f} KiB" if png else "",
        ])  # fmt: skip
    return rows


def _notes(report: dict[str, Any]) -> list[str]:
    """The PNG encoder's share (savefig minus draw only) and the verdict on the target."""
    notes = []
    for figure, _ in SIZES:
        rows = {
            case["variant"]: case["seconds"] for case in report["cases"] if case["figure"] == figure
        }
        saved, drawn = _timings(rows[""]), _timings(rows["draw only"])
        encode = {name: saved[name].median - drawn[name].median for name in ("subplots", "mosaic")}
        per_round, _ = _ratios(rows[SAVE_FIGURE])
        verdict = "met" if per_round >= report["target"] else "not met"
        notes.append(
            f"- {figure}: PNG encoding (savefig minus draw only) subplots "
            f"{encode['subplots'] * 1e3:.0f} ms, mosaic {encode['mosaic'] * 1e3:.0f} ms; "
            f"target {report['target']:.0f}x for the figure saved (subplots by savefig, the "
            f"mosaic by fxmaps.save_figure): {verdict} ({per_round:.2f}x)."
        )
    return notes


if __name__ == "__main__":
    main()
