"""Shared figure plumbing for the render modules: pyplot-free figures, tiling, colormaps.

Nothing here is public API; :mod:`fxmaps.render.maps` and :mod:`fxmaps.render.filters`
draw with it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from fxmaps.errors import InputError, OptionError, close_matches

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

Array = npt.NDArray[np.float32]
MapLike = torch.Tensor | npt.NDArray[Any]
DPI = 100
BAD_COLOR = "#ff00ff"  # non-finite values, in no common colormap
FIT = (480, 1100)  # images are enlarged by whole factors towards 480 px, shrunk past 1100
MIN_SIDE = 200  # ... and enlarged further so that their short side gets this many pixels


def as_float(value: MapLike) -> Array:
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise InputError(f"cannot draw a complex map ({value.dtype}); pass .abs() or .real")
        return value.detach().to(device="cpu", dtype=torch.float32).numpy()
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(f"cannot draw an array of dtype {value.dtype}: {err}") from err


def scaled(array: Array, *, shared: bool) -> Array:
    """Each map (all maps when ``shared``) to [0, 1] by its finite min and max; NaN kept."""
    axes = None if shared else tuple(range(1, array.ndim))
    finite = np.isfinite(array)
    lo = np.where(finite, array, np.inf).min(axis=axes, keepdims=True)
    hi = np.where(finite, array, -np.inf).max(axis=axes, keepdims=True)
    valid = hi > lo
    with np.errstate(invalid="ignore"):
        scaled = np.where(valid, (array - np.where(valid, lo, 0)) / np.where(valid, hi - lo, 1), 0)
    return np.where(finite, scaled, np.nan).astype(np.float32)


def figure(width_px: float, height_px: float) -> Figure:
    """A pyplot-free figure with an Agg canvas, ``width_px`` by ``height_px`` at ``DPI``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def axes(
    ax: Axes | None,
    shape: tuple[int, ...],
    scale: float,
    title: Sequence[str],
    *,
    colorbar: bool = False,
    ticks: bool = False,
) -> tuple[Figure, Axes, Axes | None]:
    """``ax`` and its figure, or a new figure whose axes shows ``shape`` at ``scale``.

    The title is the first line of ``title``, then the others joined and wrapped.
    """
    if ax is not None:
        fig = ax.get_figure(root=True)
        if fig is None:
            raise InputError("ax belongs to no figure; create it with fig.add_subplot()")
        ax.set_title(wrapped(title, 80), fontsize=10)
        return fig, ax, None
    height, width = round(shape[0] * scale), round(shape[1] * scale)
    left, bottom = (48, 40) if ticks else (10, 10)
    right = 10 + 70 * colorbar
    total_w = max(width + left + right, 380)
    left += (total_w - width - left - right) // 2  # centre a narrow image
    text = wrapped(title, (total_w - 20) // 7)
    top = 14 + 16 * (text.count("\n") + 1)
    total_h = height + top + bottom
    fig = figure(total_w, total_h)
    ax = fig.add_axes((left / total_w, bottom / total_h, width / total_w, height / total_h))
    ax.set_title(text, fontsize=10)
    if not colorbar:
        return fig, ax, None
    cax = fig.add_axes(
        ((left + width + 12) / total_w, bottom / total_h, 14 / total_w, height / total_h)
    )
    return fig, ax, cax


def wrapped(lines: Sequence[str], chars: int) -> str:
    notes = textwrap.wrap(", ".join(lines[1:]), width=max(20, chars))
    return "\n".join([lines[0], *notes])


def colorbar(fig: Figure, picture: ScalarMappable, cax: Axes | None, ax: Axes) -> None:
    """A colorbar in ``cax``, or taking room beside ``ax`` when there is no ``cax``."""
    bar = fig.colorbar(picture, cax=cax) if cax is not None else fig.colorbar(picture, ax=ax)
    bar.ax.tick_params(labelsize=8)


def fit(height: int, width: int) -> float:
    """Display scale: whole factors up (see FIT, MIN_SIDE), fractions down to FIT[1] pixels."""
    side = max(height, width)
    if side > FIT[1]:
        return FIT[1] / side
    factor = max(round(FIT[0] / side), math.ceil(MIN_SIDE / min(height, width)))
    return float(max(1, min(factor, FIT[1] // side)))


def zoomed(tiles: npt.NDArray[Any], grid: tuple[int, int]) -> tuple[npt.NDArray[Any], float, int]:
    """Small tiles enlarged by a whole factor before tiling, so that padding stays thin.

    Returns the tiles, the scale left for drawing (1, or below 1 for a large mosaic) and
    the padding: one pixel, two between tiles enlarged 4 times or more.
    """
    height, width = tiles.shape[1:3]
    scale = fit(grid[0] * (height + 1) - 1, grid[1] * (width + 1) - 1)
    if scale < 2:
        return tiles, scale, 1
    zoom = int(scale)
    return tiles.repeat(zoom, axis=1).repeat(zoom, axis=2), 1.0, 1 + (zoom >= 4)


def pixels_per_unit(ax: Axes, image: Array) -> float:
    """Screen pixels per image pixel of an equal-aspect image filling ``ax``."""
    fig = ax.get_figure(root=True)
    box = ax.get_position()
    width_px, height_px = fig.get_size_inches() * fig.dpi if fig else (0, 0)
    return float(
        min(box.width * width_px / image.shape[1], box.height * height_px / image.shape[0])
    )


def grid(count: int, ncols: int | None) -> tuple[int, int]:
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise OptionError(f"ncols={ncols!r} is not valid; use a whole number >= 1, or None")
    cols = min(count, ncols or math.ceil(math.sqrt(count)))
    return math.ceil(count / cols), cols


def tiles(
    values: npt.NDArray[Any],
    grid: tuple[int, int],
    pad: int,
    fill: float,
    empty: float | None = None,
) -> Any:
    """``(n, h, w, ...)`` as the tiles of one ``(rows*h + pads, cols*w + pads, ...)`` array.

    Padding holds ``fill``; the unused cells of the last row hold ``empty`` (default ``fill``).
    """
    count, height, width, *rest = values.shape
    rows, cols = grid
    cells = np.full((rows * cols, height + pad, width + pad, *rest), fill, dtype=values.dtype)
    cells[:count, :height, :width] = values
    cells[count:] = fill if empty is None else empty
    image = cells.reshape(rows, cols, height + pad, width + pad, *rest).swapaxes(1, 2)
    image = image.reshape(rows * (height + pad), cols * (width + pad), *rest)
    return np.ascontiguousarray(image[: image.shape[0] - pad, : image.shape[1] - pad])


def colormap(name: str) -> Colormap:
    import matplotlib

    try:
        base = matplotlib.colormaps[name]
    except (KeyError, TypeError):
        near = close_matches(str(name), list(matplotlib.colormaps))
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        raise OptionError(f"cmap={name!r} is not a matplotlib colormap{hint}") from None
    lut = base(np.linspace(0, 1, 64))[:, :3]
    near_white = float(np.abs(lut - 1).max(axis=1).min()) < 0.15
    # Tiles use "under" for the padding between them and "over" for empty cells.
    return base.with_extremes(bad=BAD_COLOR, under="0.8" if near_white else "white", over="white")


def check_choice(option: str, value: object, valid: Sequence[str]) -> None:
    if value not in valid:
        raise OptionError(
            f"{option}={value!r} is not valid; use one of {', '.join(map(repr, valid))}"
        )
