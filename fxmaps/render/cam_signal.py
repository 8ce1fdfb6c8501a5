"""Class activation maps of 1-d inputs (audio, sequences, signals): what :func:`plot_cam`
draws when the maps are ``(N, L)``.

One panel per sample and method: the signal as lines (one per channel, or the mean of
the channels when there are more than :data:`MAX_LINES`), over a coloured band that is
the map (each position's colour spans the panel's height), the class and its score in
the title, one colorbar for all. A batch gives a row per sample; several results
(methods) give a column each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from fxmaps.attribute import CamResult
from fxmaps.errors import InputError
from fxmaps.render import canvas
from fxmaps.render.canvas import Array, MapLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MAX_LINES", "plot_signal_cam", "signals"]

MAX_LINES = 8
"""Channels drawn as lines of their own; a signal with more is drawn as their mean."""

_WIDTH, _HEIGHT, _GAP = 460, 130, 44  # pixels per panel, and between rows


def signals(image: MapLike, results: list[CamResult]) -> Array:
    """``(N, C, L)`` float signals, checked against the ``(N, L)`` maps."""
    shape = tuple(results[0].maps.shape)
    array = canvas.as_float(image)
    if array.ndim == 2 and shape[0] == 1:
        array = array[None]  # one sample (C, L)
    if array.ndim != 3 or (array.shape[0], array.shape[2]) != shape:
        raise InputError(
            f"signal of shape {tuple(canvas.as_float(image).shape)} does not match maps of "
            f"{shape}; pass the (N, C, L) batch given to fxmaps.cam",
            argument="image",
            got=str(tuple(array.shape)),
        )
    return array


def plot_signal_cam(
    results: list[CamResult],
    drawn: Array,
    title: Callable[[CamResult, int], str],
    *,
    alpha: float,
    colormap: Any,
    ncols: int | None,
    ax: Axes | None,
) -> Figure:
    """The figure of :func:`fxmaps.plot_cam` for 1-d maps; ``title(result, sample)`` is
    each panel's title."""
    if ax is not None:
        fig = ax.get_figure(root=True)
        if fig is None:
            raise InputError("ax belongs to no figure; pass an axes of a figure", argument="ax")
        one = _panel(ax, drawn[0], results[0], 0, title(results[0], 0), alpha, colormap)
        canvas.colorbar(fig, one, None, ax)
        return fig
    cells = [(i, result) for i in range(len(drawn)) for result in results]
    cols = len(results) if len(results) > 1 or ncols is None else max(1, ncols)
    rows = -(-len(cells) // cols)
    width, height = cols * _WIDTH + 90, rows * (_HEIGHT + _GAP) + 56
    fig = canvas.figure(width, height)
    band: Any = None
    for cell, (sample, result) in enumerate(cells):
        row, col = divmod(cell, cols)
        left = (40 + col * _WIDTH) / width
        bottom = 1 - (30 + (row + 1) * (_HEIGHT + _GAP)) / height
        ax = fig.add_axes((left, bottom, (_WIDTH - 50) / width, _HEIGHT / height))
        band = _panel(ax, drawn[sample], result, sample, title(result, sample), alpha, colormap)
    cax = fig.add_axes(((cols * _WIDTH + 20) / width, 0.1, 14 / width, 0.8))
    canvas.colorbar(fig, band, cax, fig.axes[0])
    fig.suptitle(f"where the model looks (at {results[0].layer})", fontsize=canvas.TITLE_SIZE)
    return fig


def lines_of(signal: Array) -> Array:
    """What is drawn of a ``(C, L)`` signal: every channel, or their mean when there are
    more than :data:`MAX_LINES`."""
    return signal if len(signal) <= MAX_LINES else signal.mean(axis=0, keepdims=True)


def _panel(
    ax: Axes,
    signal: Array,
    result: CamResult,
    index: int,
    title: str,
    alpha: float,
    colormap: Any,
) -> Any:
    lines = lines_of(signal)
    length = lines.shape[1]
    low, high = _limits(lines)
    band = ax.imshow(
        result.maps[index].numpy()[None, :], cmap=colormap, vmin=0, vmax=1, alpha=alpha,
        aspect="auto", interpolation="nearest", extent=(-0.5, length - 0.5, low, high),
    )  # fmt: skip
    positions = np.arange(length)
    for line in lines:
        ax.plot(positions, line, color="black", linewidth=0.8)
    ax.set_xlim(-0.5, length - 0.5)
    ax.set_ylim(low, high)
    mean = f"  (mean of {len(signal)} channels)" if len(lines) < len(signal) else ""
    ax.set_title(title + mean, fontsize=canvas.TITLE_SIZE - 1)
    ax.tick_params(labelsize=7)
    return band


def _limits(lines: Array) -> tuple[float, float]:
    finite = lines[np.isfinite(lines)]
    if not finite.size:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * (high - low) if high > low else 0.5
    return low - pad, high + pad
