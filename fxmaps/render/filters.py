"""Convolution weights as images: :func:`plot_filters`.

What ``mode="auto"`` draws, by the kernels' form:

* 2-D kernels over 3 input channels (a first layer): one colour tile per filter,
  each scaled to its own range (``"rgb"``).
* depthwise kernels ``(C, 1, kh, kw)``: one tile per channel.
* 1×1 kernels: the ``(out, in)`` weight matrix.
* other kernels: ``"channels"``, a grid with a row per filter and a column per input
  channel (the first 16), each cell one kernel. ``"mean"`` instead draws one tile
  per filter, its kernels averaged over the input channels.
* Conv1d kernels ``(out, in, k)`` are ``1 × k`` tiles: a heat strip per filter.
  Conv3d kernels show their middle depth slice.

Grouped convolutions show, for each filter, the kernels over its own group's
``in / groups`` input channels; transposed convolutions are rearranged to
``(out, in / groups, ...)`` first. Kernels other than RGB share one range
symmetric about zero, shown by a colorbar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from fxmaps.classify.parameters import registered
from fxmaps.errors import InputError, OptionError
from fxmaps.graph import Layer, format_shape
from fxmaps.render import canvas
from fxmaps.render.canvas import Array

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["FilterFigures", "drawable", "plot_filters"]

_MODES = ("auto", "rgb", "channels", "mean")
_MAX_INPUTS = 16  # input channels drawn per filter by mode="channels"
_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


@dataclass(frozen=True)
class _Kernels:
    """Weights as ``(out, in / groups, kh, kw)``; 1-D kernels have ``kh == 1``."""

    weight: Array
    label: str
    notes: tuple[str, ...]
    one_d: bool


def plot_filters(
    layer_or_weight: Layer | nn.Module | torch.Tensor | npt.NDArray[Any],
    *,
    max_filters: int = 64,
    mode: str = "auto",
    ncols: int | None = None,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    notes: Sequence[str] = (),
) -> Figure:
    """Draw the kernels of a convolution, one image for all filters.

    Args:
        layer_or_weight: A conv :class:`~fxmaps.Layer` (from ``g.layers("conv")``), a
            conv module (``nn.Conv1d/2d/3d`` or transposed), or a weight tensor
            ``(out, in, k...)``, read as ungrouped.
        max_filters: Draw at most this many filters (output channels).
        mode: ``"auto"``, ``"rgb"`` (3 input channels as colour), ``"channels"`` (each
            input channel's kernel) or ``"mean"`` (kernels averaged over inputs).
        ncols: Tiles per row for one-tile-per-filter views; by default near-square.
        cmap: A matplotlib colormap, best a diverging one (not used by ``"rgb"``).
        ax: Draw into this axes instead of a new figure.
        notes: More lines under the title, such as which weights the model has
            (``"random weights (untrained)"``).

    Returns:
        The figure (``ax``'s figure when ``ax`` is given). Nothing is shown or saved.

    Raises:
        InputError: Not a convolution, or a weight of another shape.
        OptionError: An option outside its valid values (``"rgb"`` without 3 inputs).

    Example:
        >>> from torch import nn
        >>> from fxmaps.render.filters import plot_filters
        >>> fig = plot_filters(nn.Conv2d(3, 8, 5))  # a first layer: colour tiles
        >>> fig.axes[0].get_title().splitlines()
        ['Conv2d  weight 8×3×5×5', 'each filter scaled to its own range']
        >>> fig.axes[0].images[0].get_array().shape[-1]  # RGBA
        4
    """
    return _plot(layer_or_weight, max_filters, mode, ncols, cmap, ax, notes, None)


class FilterFigures:
    """The filters of many convolutions, drawn into one figure per layout.

    :meth:`plot` returns what :func:`plot_filters` returns, pixel for pixel. A conv whose
    figure has the layout of an earlier one's (the same kernel shape: the same size,
    ticks and colorbar, and as many title lines) gets that figure back with its image,
    colour range and title replaced, so its axes, ticks and colorbar are made once, not
    once per conv. A figure returned is therefore only valid until the next call:
    draw or save it first. The report draws every conv's filters this way.

    Example:
        >>> from torch import nn
        >>> from fxmaps.render.filters import FilterFigures
        >>> figures = FilterFigures()
        >>> first = figures.plot(nn.Conv2d(8, 8, 3))
        >>> figures.plot(nn.Conv2d(8, 8, 3)) is first  # same layout: the same figure
        True
    """

    def __init__(self) -> None:
        self._figures: _Figures = {}

    def plot(
        self,
        layer_or_weight: Layer | nn.Module | torch.Tensor | npt.NDArray[Any],
        *,
        max_filters: int = 64,
        mode: str = "auto",
        ncols: int | None = None,
        cmap: str = "RdBu_r",
        notes: Sequence[str] = (),
    ) -> Figure:
        """:func:`plot_filters` of ``layer_or_weight`` (its options but ``ax``)."""
        return _plot(layer_or_weight, max_filters, mode, ncols, cmap, None, notes, self._figures)


_Figures = dict[tuple[Any, ...], "Figure"]
"""Figures by layout (see :class:`FilterFigures`)."""


def _plot(
    layer_or_weight: Layer | nn.Module | torch.Tensor | npt.NDArray[Any],
    max_filters: int,
    mode: str,
    ncols: int | None,
    cmap: str,
    ax: Axes | None,
    notes: Sequence[str],
    figures: _Figures | None,
) -> Figure:
    kernels = _kernels(layer_or_weight)
    view = _view(kernels, mode)
    if isinstance(max_filters, bool) or not isinstance(max_filters, int) or max_filters < 1:
        raise OptionError(
            f"max_filters={max_filters!r} is not valid; use a whole number >= 1",
            option="max_filters",
            value=max_filters,
            valid=("a whole number >= 1",),
        )
    weight = kernels.weight[:max_filters]
    shown = tuple(kernels.notes)
    if len(weight) < len(kernels.weight):
        shown = (*shown, f"first {len(weight)} of {len(kernels.weight)} filters")
    title = [kernels.label, *shown, *notes]
    if view == "rgb":
        return _draw_rgb(weight, title, ncols, ax, figures)
    colormap = canvas.colormap(cmap)
    if view == "mean":
        mean = weight.mean(axis=1)
        return _draw_grid(mean, [*title, "mean over inputs"], colormap, ncols, ax, figures)
    if weight.shape[2] * weight.shape[3] == 1 or (kernels.one_d and weight.shape[1] == 1):
        return _draw_matrix(weight, title, colormap, ax, figures)
    if weight.shape[1] == 1:
        return _draw_grid(weight[:, 0], title, colormap, ncols, ax, figures)
    return _draw_channels(weight, title, colormap, kernels.one_d, ax, figures)


def drawable(layer: Layer) -> bool:
    """Whether :func:`plot_filters` draws ``layer``'s kernels: a conv module whose weight
    exists (not a lazy module before its first run)."""
    if not isinstance(layer.module, _CONVS):
        return False
    weight = registered(layer.module, "weight")
    return isinstance(weight, torch.Tensor) and not isinstance(weight, UninitializedParameter)


def _kernels(source: Layer | nn.Module | torch.Tensor | npt.NDArray[Any]) -> _Kernels:
    if isinstance(source, Layer):
        if source.module is None:
            raise InputError(
                f"layer {source.name!r} ({source.kind.value}, {source.target}) calls a function, "
                "not a module: pass the weight tensor it uses instead",
                argument="layer_or_weight",
                got=f"a call of {source.target}",
                node=source.name,
            )
        if not isinstance(source.module, _CONVS):
            raise InputError(
                f"layer {source.name!r} is a {source.kind.value} node ({source.module_type}), "
                "not a convolution; pick one of g.layers('conv')",
                argument="layer_or_weight",
                got=source.module_type,
                node=source.name,
            )
        return _from_module(source.module, source.name)
    if isinstance(source, nn.Module):
        if not isinstance(source, _CONVS):
            raise InputError(
                f"{type(source).__name__} is not a convolution; plot_filters() draws "
                "nn.Conv1d/2d/3d (and transposed) weights, or a weight tensor",
                argument="layer_or_weight",
                got=type(source).__name__,
            )
        return _from_module(source, type(source).__name__)
    if isinstance(source, (torch.Tensor, np.ndarray)):
        weight = canvas.as_float(source)
        return _from_weight(weight, f"weight {format_shape(weight.shape)}", ())
    raise InputError(
        f"cannot draw filters of a {type(source).__name__}; pass a conv Layer, module or weight",
        argument="layer_or_weight",
        got=type(source).__name__,
    )


def _from_module(module: nn.Module, name: str) -> _Kernels:
    # From the registry, not as an attribute: while another thread traces, torch.fx's
    # process-wide nn.Module.__getattr__ patch would hand back that trace's proxy.
    parameter = registered(module, "weight")
    if not isinstance(parameter, torch.Tensor) or isinstance(parameter, UninitializedParameter):
        raise InputError(
            f"{name} has no weight to draw yet; run the model once first",
            argument="layer_or_weight",
            got="an uninitialized weight",
        )
    weight, groups = canvas.as_float(parameter), int(getattr(module, "groups", 1))
    label = f"{name}  weight {format_shape(tuple(parameter.shape))}"
    notes: tuple[str, ...] = ()
    if getattr(module, "transposed", False):  # (in, out / groups, ...) -> (out, in / groups, ...)
        inputs, per_group, *kernel = weight.shape
        grouped = weight.reshape(groups, inputs // groups, per_group, *kernel).swapaxes(1, 2)
        weight = grouped.reshape(groups * per_group, inputs // groups, *kernel)
        notes = ("transposed conv, kernels by output channel",)
    if groups > 1:
        grouped = f"groups={groups}: each filter over its group's inputs"
        notes = (*notes, "depthwise: one kernel per channel" if weight.shape[1] == 1 else grouped)
    return _from_weight(weight, label, notes)


def _from_weight(weight: Array, label: str, notes: tuple[str, ...]) -> _Kernels:
    if weight.ndim == 5:
        depth = weight.shape[2]
        weight = weight[:, :, depth // 2]
        notes = (*notes, f"middle depth slice {depth // 2} of {depth}")
    if weight.ndim not in (3, 4) or 0 in weight.shape:
        raise InputError(
            f"cannot draw a weight shaped {weight.shape}; expected conv weights (out, in, k), "
            "(out, in, kh, kw) or (out, in, kd, kh, kw)",
            argument="layer_or_weight",
            got=f"a weight shaped {weight.shape}",
        )
    one_d = weight.ndim == 3
    return _Kernels(weight[:, :, None] if one_d else weight, label, notes, one_d)


def _view(kernels: _Kernels, mode: str) -> str:
    canvas.check_choice("mode", mode, _MODES)
    _, inputs, height, width = kernels.weight.shape
    if mode == "rgb" and (inputs != 3 or kernels.one_d):
        raise OptionError(
            f"mode='rgb' needs 2-D kernels over 3 input channels; {kernels.label} has "
            f"{inputs}{' (1-D)' if kernels.one_d else ''}; use mode='channels' or 'mean'",
            option="mode",
            value=mode,
            valid=("channels", "mean"),
        )
    if mode != "auto":
        return mode
    return "rgb" if inputs == 3 and not kernels.one_d and height * width > 1 else "channels"


def _draw_rgb(
    weight: Array, title: list[str], ncols: int | None, ax: Axes | None, figures: _Figures | None
) -> Figure:
    colour = canvas.scaled(weight.transpose(0, 2, 3, 1), shared=False)  # each filter to [0, 1]
    rgba = np.concatenate([np.nan_to_num(colour), np.ones_like(colour[..., :1])], axis=-1)
    grid = canvas.grid(len(rgba), ncols)
    rgba, scale, pad = canvas.zoomed(rgba, grid)
    image = canvas.tiles(rgba, grid, pad, 0.0)  # padding and empty cells transparent
    title = [*title, "each filter scaled to its own range"]
    key = ("rgb", image.shape, scale, grid, rgba.shape[1:], pad)
    if ax is None and (reused := _reused(figures, key, title, image, None)):
        return reused
    fig, ax, _ = canvas.axes(ax, image.shape, scale, title, ticks=True)
    ax.imshow(image, interpolation="nearest" if scale == 1 else "auto")
    _grid_ticks(ax, grid, rgba.shape[1:], pad)
    return _kept(figures, key, fig)


def _draw_grid(
    tiles: Array,
    title: list[str],
    colormap: Colormap,
    ncols: int | None,
    ax: Axes | None,
    figures: _Figures | None,
) -> Figure:
    """One tile per filter, in a near-square grid."""
    limit = _limit(tiles)
    grid = canvas.grid(len(tiles), ncols)
    tiles, scale, pad = canvas.zoomed(tiles, grid)
    image = canvas.tiles(
        tiles, grid, pad, -2 * limit, 2 * limit
    )  # the colormap's under and over colours
    key = ("grid", image.shape, scale, grid, tiles.shape[1:], pad, colormap.name)
    if ax is None and (reused := _reused(figures, key, title, image, limit)):
        return reused
    fig, ax, cax = canvas.axes(ax, image.shape, scale, title, colorbar=True, ticks=True)
    picture = _show(ax, image, colormap, limit, scale)
    _grid_ticks(ax, grid, tiles.shape[1:], pad)
    canvas.colorbar(fig, picture, cax, ax)
    return _kept(figures, key, fig)


def _show(ax: Axes, image: Array, colormap: Colormap, limit: float, scale: float) -> AxesImage:
    """Weights on a colormap centred at zero, ``limit`` either side."""
    interpolation = "nearest" if scale == 1 else "auto"
    return ax.imshow(image, cmap=colormap, vmin=-limit, vmax=limit, interpolation=interpolation)


def _draw_matrix(
    weight: Array, title: list[str], colormap: Colormap, ax: Axes | None, figures: _Figures | None
) -> Figure:
    """1×1 kernels as the (out, in) matrix; 1-D kernels over one input as (out, taps)."""
    matrix = weight[:, :, 0, 0] if weight.shape[3] == 1 else weight[:, 0, 0, :]
    limit = _limit(matrix)
    key = ("matrix", matrix.shape, weight.shape[3] > 1, colormap.name)
    if ax is None and (reused := _reused(figures, key, title, matrix, limit)):
        return reused
    fig, ax, cax = canvas.axes(
        ax, matrix.shape, canvas.fit(*matrix.shape), title, colorbar=True, ticks=True
    )
    picture = ax.imshow(matrix, cmap=colormap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xlabel("tap" if weight.shape[3] > 1 else "input channel", fontsize=8)
    ax.set_ylabel("filter", fontsize=8)
    ax.tick_params(labelsize=7)
    canvas.colorbar(fig, picture, cax, ax)
    return _kept(figures, key, fig)


def _draw_channels(
    weight: Array,
    title: list[str],
    colormap: Colormap,
    one_d: bool,
    ax: Axes | None,
    figures: _Figures | None,
) -> Figure:
    """Each kernel of the first _MAX_INPUTS inputs: a column per filter (a row per 1-D filter)."""
    out, inputs, height, width = weight.shape
    shown = min(inputs, _MAX_INPUTS)
    if shown < inputs:
        title = [*title, f"first {shown} of {inputs} inputs"]
    limit = _limit(weight[:, :shown])
    cells = weight[:, :shown] if one_d else weight[:, :shown].swapaxes(0, 1)
    grid = (out, shown) if one_d else (shown, out)
    cells, scale, pad = canvas.zoomed(cells.reshape(out * shown, height, width), grid)
    image = canvas.tiles(cells, grid, pad, -2 * limit)
    key = ("channels", image.shape, scale, grid, cells.shape[1:], pad, one_d, colormap.name)
    if ax is None and (reused := _reused(figures, key, title, image, limit)):
        return reused
    fig, ax, cax = canvas.axes(ax, image.shape, scale, title, colorbar=True, ticks=True)
    picture = _show(ax, image, colormap, limit, scale)
    _cell_ticks(ax.yaxis, grid[0], cells.shape[1], pad)
    _cell_ticks(ax.xaxis, grid[1], cells.shape[2], pad)
    ax.set_xlabel("input channel" if one_d else "filter", fontsize=8)
    ax.set_ylabel("filter" if one_d else "input channel", fontsize=8)
    canvas.colorbar(fig, picture, cax, ax)
    return _kept(figures, key, fig)


def _reused(
    figures: _Figures | None,
    key: tuple[Any, ...],
    title: list[str],
    image: Array,
    limit: float | None,
) -> Figure | None:
    """The figure drawn earlier with ``key``'s layout, now showing ``image`` on the colour
    range ``±limit`` under ``title``; ``None`` when there is none, or the title would take
    another number of lines there (another height)."""
    fig = None if figures is None else figures.get(key)
    if fig is None:
        return None
    ax = fig.axes[0]
    width = round(fig.get_figwidth() * canvas.DPI)
    text = canvas.wrapped(title, (width - 20) // 7)  # as canvas.axes wraps it
    if text.count("\n") != ax.get_title().count("\n"):
        return None
    picture = ax.images[0]
    picture.set_data(image)
    if limit is not None:
        picture.set_clim(-limit, limit)  # the colorbar follows
    ax.set_title(text, fontsize=canvas.TITLE_SIZE)
    return fig


def _kept(figures: _Figures | None, key: tuple[Any, ...], fig: Figure) -> Figure:
    if figures is not None:
        figures.setdefault(key, fig)
    return fig


def _grid_ticks(ax: Axes, grid: tuple[int, int], tile: tuple[int, ...], pad: int) -> None:
    """Rows labelled by their first filter, columns by the offset added to it."""
    _cell_ticks(ax.yaxis, grid[0], tile[0], pad, scale=grid[1])
    _cell_ticks(ax.xaxis, grid[1], tile[1], pad, prefix="+")
    ax.set_ylabel("filter", fontsize=8)


def _cell_ticks(
    axis: Axis, count: int, size: int, pad: int, scale: int = 1, prefix: str = ""
) -> None:
    """Ticks at the centres of ``count`` cells of ``size`` pixels, ``pad`` apart."""
    step = math.ceil(count / 16)
    picks = range(0, count, step)
    centres = [i * (size + pad) + (size - 1) / 2 for i in picks]
    axis.set_ticks(centres, [f"{prefix}{i * scale}" for i in picks], fontsize=7)
    axis.set_tick_params(length=2)


def _limit(values: Array) -> float:
    """Half the width of a colour range symmetric about zero."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0
