"""Feature maps as one mosaic image: :func:`plot_feature_maps`, :func:`plot_layers`, :func:`mosaic`.

The channels of a map are laid out as the tiles of one array, a pixel of padding
between them, and drawn as one image: many times cheaper to draw than one subplot
per channel. The image is shown pixel for pixel, or enlarged by a whole factor when
the axes (``ax=``) has room, and then drawn without resampling: its values are
colour-mapped once and each pixel copied. The rest of a larger axes is plain
background. Only a mosaic larger than its axes is shrunk, and smoothed.

What is drawn, by the map's shape (and, from a :class:`~fxmaps.FeatureMaps`, its
layer's layout):

* ``(N, C, H, W)`` and ``(C, H, W)``: one tile per channel; ``(H, W)``: one tile.
* ``(N, C, D, H, W)``: the middle depth slice of each channel (the title says so).
* ``(N, C, L)`` (Conv1d) and channels-last tokens ``(N, L, C)`` whose ``L`` is no
  square grid: a heat image, one row per channel. A bare 3-D array is read as
  ``(C, H, W)``; 1-D maps are recognised when they come in a ``FeatureMaps``.
* Channels-last grids ``(N, H, W, C)`` and square token maps (leading class
  tokens dropped): turned channels-first, then drawn as tiles.

Non-finite values are masked and drawn in magenta, with a :class:`~fxmaps.FxmapsWarning`.
matplotlib is imported only when something is drawn, and figures are built
without pyplot: no global state, nothing shown, nothing leaked.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from fxmaps.errors import FxmapsWarning, InputError, OptionError
from fxmaps.extract.maps import FeatureMaps
from fxmaps.render import canvas
from fxmaps.render.canvas import Array, MapLike
from fxmaps.render.overlay import blend, display_size
from fxmaps.render.overlay import heat as overlay_heat
from fxmaps.render.overlay import photo as overlay_photo
from fxmaps.render.panels import Panel, masked, panel_of, selected, value_range

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

__all__ = ["mosaic", "plot_feature_maps", "plot_layers"]

_ORDERS = ("index", "energy")
_NORMALIZE = ("per-map", "shared")
_LABEL_MIN_PX = 28  # tiles drawn smaller than this get no channel label
_OVERLAY_SIDE = 128  # pixels of an overlaid tile's longer side, before the mosaic is fitted


def mosaic(
    maps: npt.ArrayLike, *, ncols: int | None = None, pad: int = 1, normalize: str = "per-map"
) -> Array:
    """Lay ``(n, h, w)`` maps out as the tiles of one 2-D array, row by row.

    Args:
        maps: The maps, ``(n, h, w)``.
        ncols: Tiles per row; by default a near-square grid.
        pad: Pixels of NaN between tiles (the empty cells of the last row are NaN too).
        normalize: ``"per-map"`` scales each map to ``[0, 1]`` by its own minimum and
            maximum, ``"shared"`` scales all maps by one range, ``"none"`` keeps the
            values. Non-finite values become NaN; a constant map becomes 0.

    Example:
        >>> import numpy as np
        >>> from fxmaps.render.maps import mosaic
        >>> image = mosaic(np.random.rand(64, 10, 10))
        >>> image.shape, float(np.nanmin(image)), float(np.nanmax(image))
        ((87, 87), 0.0, 1.0)
    """
    array = np.array(maps, dtype=np.float32)
    if array.ndim != 3 or 0 in array.shape:
        raise InputError(
            f"mosaic() takes maps shaped (n, h, w), not {array.shape}",
            argument="maps",
            got=f"maps shaped {array.shape}",
        )
    canvas.check_choice("normalize", normalize, (*_NORMALIZE, "none"))
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise OptionError(
            f"pad={pad!r} is not valid; use a whole number of pixels >= 0",
            option="pad",
            value=pad,
            valid=("a whole number of pixels >= 0",),
        )
    array[~np.isfinite(array)] = np.nan
    values = array if normalize == "none" else canvas.scaled(array, shared=normalize == "shared")
    image: Array = canvas.tiles(values, canvas.grid(len(array), ncols), pad, np.nan)
    return image


def plot_feature_maps(
    maps_or_tensor: MapLike | FeatureMaps,
    name: str | None = None,
    *,
    max_maps: int = 64,
    ncols: int | None = None,
    order: str = "index",
    cmap: str = "viridis",
    normalize: str = "per-map",
    sample: int = 0,
    labels: bool = True,
    ax: Axes | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
    colorbar: bool | None = None,
    image: MapLike | None = None,
    show_input: bool = False,
    overlay: bool = False,
) -> Figure:
    """Draw the channels of one feature map as the tiles of a single image.

    Args:
        maps_or_tensor: A map (tensor or array), or a :class:`~fxmaps.FeatureMaps`
            holding the map ``name`` (which may be left out when it holds one map).
        name: The map to draw from a ``FeatureMaps``; also the start of the title.
        max_maps: Draw at most this many channels.
        ncols: Tiles per row; by default a near-square grid.
        order: ``"index"`` (channel order) or ``"energy"`` (largest mean absolute
            activation first). Labels always give the real channel index.
        cmap: A matplotlib colormap name.
        normalize: ``"per-map"`` (each tile spans the whole colormap) or ``"shared"``
            (one range for all tiles, shown by a colorbar).
        sample: Which item of a batch to draw.
        labels: Write each tile's channel index in its corner (not on tiny tiles).
        ax: Draw into this axes instead of a new figure. The mosaic is shown at the
            largest whole-number scale that fits (the rest of the axes stays
            background, the title moves down to it), or shrunk to fit when it is larger.
        title: Replaces the default title (name and shape); notes such as the depth
            slice of a 3-D map are still added below it.
        notes: More lines under the title, such as which weights the model has
            (``"random weights (untrained)"``).
        colorbar: Draw a colorbar: the values with ``normalize="shared"`` (the
            default there), or each map's own minimum to maximum with ``"per-map"``
            (the title then gives the range of all values).
        image: The input the maps came from, for ``show_input`` and ``overlay``:
            ``(N, 3, H, W)`` (item ``sample``), ``(3, H, W)``, ``(H, W, 3)`` or
            ``(H, W)``, such as ``fxmaps.load_image(normalize=False)``.
        show_input: Draw ``image`` left of the mosaic, as tall as it.
        overlay: Blend each map, upsampled to the photo's size, over ``image``.

    Returns:
        The figure (``ax``'s figure when ``ax`` is given). Nothing is shown or saved.

    Raises:
        InputError: A map that cannot be drawn, or a ``FeatureMaps`` of several maps
            without ``name``.
        OptionError: An option outside its valid values.

    Example:
        >>> import torch
        >>> from fxmaps.render.maps import plot_feature_maps
        >>> maps = torch.rand(1, 6, 8, 8) + torch.arange(6.0).view(1, 6, 1, 1)  # channel 5 largest
        >>> fig = plot_feature_maps(maps, order="energy", max_maps=4)
        >>> [len(ax.images) for ax in fig.axes], [t.get_text() for t in fig.axes[0].texts]
        ([1], ['5', '4', '3', '2'])
    """
    _check_options(order=order, normalize=normalize, count=("max_maps", max_maps))
    colormap = canvas.colormap(cmap)
    panel, problem = masked(selected(panel_of(maps_or_tensor, name, sample), order, max_maps))
    panel = replace(panel, notes=(*panel.notes, *notes))
    extras = _extras(panel, image, sample, show_input=show_input, overlay=overlay, ax=ax)
    if problem:
        warnings.warn(problem, FxmapsWarning, stacklevel=2)
    shared = normalize == "shared"
    if panel.axis is not None:
        return _draw_rows(panel, colormap, shared=shared, ax=ax, title=title, colorbar=colorbar)
    return _draw_tiles(
        panel,
        colormap,
        _Look(shared, colorbar, ncols, labels, *extras),
        ax=ax,
        title=title,
    )


def plot_layers(
    maps: FeatureMaps,
    *,
    per_layer: int = 8,
    order: str = "energy",
    cmap: str = "viridis",
    sample: int = 0,
) -> Figure:
    """One overview figure: a row per map, with its ``per_layer`` first or most active channels.

    Each row is one mosaic strip labelled with the node name and the map's shape;
    tiles are normalised each to its own range and labelled with their channel.
    A map that cannot be drawn (a scalar, a tuple) gets a row saying why.

    Args:
        maps: The maps, in the order their rows are drawn.
        per_layer: Channels drawn per row.
        order: ``"energy"`` (most active first) or ``"index"`` (first channels).
        cmap: A matplotlib colormap name.
        sample: Which item of the batch to draw.

    Example:
        >>> import torch, fxmaps
        >>> from torch import nn
        >>> from fxmaps.render.maps import plot_layers
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3))
        >>> fig = plot_layers(fxmaps.extract(model, torch.randn(1, 3, 12, 12)), per_layer=3)
        >>> [ax.get_title(loc="left") for ax in fig.axes]
        ['0  1×4×10×10  ·  3 of 4 channels by energy', '2  1×6×8×8  ·  3 of 6 channels by energy']
    """
    if not isinstance(maps, FeatureMaps) or not maps:
        raise InputError(
            f"plot_layers() takes a non-empty FeatureMaps, not {maps!r}",
            argument="maps",
            got="an empty FeatureMaps" if isinstance(maps, FeatureMaps) else type(maps).__name__,
        )
    _check_options(order=order, normalize="per-map", count=("per_layer", per_layer))
    colormap = canvas.colormap(cmap)
    rows = [_layer_row(maps, name, sample, order, per_layer) for name in maps]
    problems = [problem for _, problem in rows if problem]
    if problems:
        warnings.warn("; ".join(problems), FxmapsWarning, stacklevel=2)
    return _draw_layers([row[0] for row in rows], colormap, per_layer)


# -- how to draw it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    """How to draw a mosaic of tiles, besides the colormap."""

    shared: bool
    colorbar: bool | None
    ncols: int | None
    labels: bool
    photo: Array | None = None  # (H, W, 3) in [0, 1]: the input, for show_input or overlay
    show_input: bool = False
    overlay: bool = False


def _extras(
    panel: Panel,
    image: MapLike | None,
    sample: int,
    *,
    show_input: bool,
    overlay: bool,
    ax: Axes | None,
) -> tuple[Array | None, bool, bool]:
    """The input photo and the two flags that draw it, checked."""
    for option, value in (("show_input", show_input), ("overlay", overlay)):
        if not isinstance(value, bool):
            raise OptionError(
                f"{option}={value!r} is not valid; use True or False (the image goes in image=)",
                option=option,
                value=value,
                valid=("True", "False"),
            )
    if not (show_input or overlay):
        if image is not None:
            raise OptionError(
                "image= is drawn with show_input=True or overlay=True; pass one of them",
                option="image",
                value="an image",
                valid=("show_input=True", "overlay=True"),
            )
        return None, False, False
    wanted = "show_input" if show_input else "overlay"
    if image is None:
        raise _extra_error(
            wanted,
            "needs image=, the input the maps came from (e.g. fxmaps.load_image(normalize=False))",
        )
    if panel.axis is not None:
        raise _extra_error(wanted, "draws on tiles of (C, H, W) maps, not on rows of 1-D maps")
    if show_input and ax is not None:
        raise _extra_error(wanted, "needs a new figure; leave ax out")
    return overlay_photo(image, sample=sample), show_input, overlay


def _extra_error(option: str, problem: str) -> OptionError:
    return OptionError(f"{option}=True {problem}", option=option, value=True, valid=("False",))


def _draw_tiles(
    panel: Panel, colormap: Colormap, look: _Look, *, ax: Axes | None, title: str | None
) -> Figure:
    shared = look.shared or panel.data[0].size == 1  # 1×1 maps: only a shared range says much
    bar = shared if look.colorbar is None else look.colorbar
    values, vmin, vmax = value_range(panel.data, shared=shared)
    lines = panel.title(title)
    if bar and not shared:
        lines = [*lines, _range_note(panel.data)]
    grid = canvas.grid(len(values), look.ncols)
    if look.overlay and look.photo is not None:
        values = _overlaid(panel.data, look.photo, colormap, shared)
        values, scale, pad = canvas.zoomed(values, grid)
        image = canvas.tiles(values, grid, pad, 1.0)  # white between the photos
    else:
        values, scale, pad = canvas.zoomed(values, grid)
        span = max(1.0, vmax - vmin)  # padding below vmin, empty cells above vmax: see colormap
        image = canvas.tiles(values, grid, pad, vmin - span, vmax + span)
    shown = round(image.shape[0] * scale)
    before = round(shown * _aspect(look.photo)) if look.show_input else 0
    fig, ax, cax = canvas.axes(ax, image.shape, scale, lines, colorbar=bar, before=before)
    picture = canvas.show(ax, image, colormap, vmin, vmax)
    ax.set_axis_off()
    if bar:
        _colorbar(fig, picture, cax, ax, shared=shared)
    if look.show_input and look.photo is not None:
        canvas.beside(fig, ax, before, "input").imshow(look.photo, aspect="auto")
    pixels = canvas.place(ax, picture)  # after the colorbar, which may take room from ax
    if look.labels:
        light = values.mean(axis=-1) if values.ndim == 4 else values
        colors = (canvas.colormap("gray"), 0.0, 1.0) if values.ndim == 4 else (colormap, vmin, vmax)
        _label_tiles(ax, light, panel.channels, grid[1], pad, pixels, colors)
    return fig


def _aspect(photo: Array | None) -> float:
    return 1.0 if photo is None else photo.shape[1] / photo.shape[0]


def _overlaid(data: Array, photo: Array, colormap: Colormap, shared: bool) -> Array:
    """Each map upsampled over the photo at its display size: ``(C, h, w, 3)`` in [0, 1]."""
    size = display_size(photo.shape[0], photo.shape[1], _OVERLAY_SIDE)
    picture = overlay_photo(photo, size=size, smooth=True)
    heat = overlay_heat(torch.from_numpy(data)[None], size, shared=shared)[0]
    return blend(picture[None], heat, colormap)


def _range_note(data: Array) -> str:
    finite = data[np.isfinite(data)]
    if not finite.size:
        return "colorbar: per map"
    return f"values {finite.min():.3g} to {finite.max():.3g} (colorbar: per map)"


def _colorbar(fig: Figure, picture: AxesImage, cax: Axes | None, ax: Axes, *, shared: bool) -> None:
    """The values of a shared range, or min to max of each map's own."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    vmin, vmax = picture.get_clim()
    mappable = ScalarMappable(Normalize(vmin, vmax), picture.get_cmap())
    canvas.colorbar(fig, mappable, cax, ax)
    if not shared:
        bar_ax = cax if cax is not None else fig.axes[-1]
        bar_ax.set_yticks([0, 1], ["min", "max"])


def _draw_rows(
    panel: Panel,
    colormap: Colormap,
    *,
    shared: bool,
    ax: Axes | None,
    title: str | None,
    colorbar: bool | None = None,
) -> Figure:
    values, vmin, vmax = value_range(panel.data, shared=shared)
    bar = shared if colorbar is None else colorbar
    rows, length = values.shape
    size = (rows * min(18, max(3, round(360 / rows))), min(1000, max(480, length)))
    fig, ax, cax = canvas.axes(ax, size, 1.0, panel.title(title), colorbar=bar, ticks=True)
    picture = ax.imshow(
        values,
        cmap=colormap,
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest" if length <= size[1] else "auto",
    )
    step = math.ceil(rows / 24)
    ax.set_yticks(range(0, rows, step), [str(c) for c in panel.channels[::step]], fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(panel.axis or "", fontsize=8)
    ax.set_ylabel("channel", fontsize=8)
    if bar:
        _colorbar(fig, picture, cax, ax, shared=shared)
    return fig


def _layer_row(
    maps: FeatureMaps, name: str, sample: int, order: str, count: int
) -> tuple[Panel | str, str | None]:
    try:
        return masked(selected(panel_of(maps, name, sample), order, count))
    except InputError as err:
        return f"{name}: not drawn ({err})", None


def _draw_layers(rows: Sequence[Panel | str], colormap: Colormap, slots: int) -> Figure:
    slot, gap, margin, head = min(128, max(40, round(960 / slots))), 4, 10, 22
    width = slots * slot + (slots - 1) * gap
    heights = [_row_height(row, slot) for row in rows]
    total = sum(heights) + len(rows) * head + margin
    fig = canvas.figure(width + 2 * margin, total)
    top = total
    for row, height in zip(rows, heights, strict=True):
        top -= head + height
        box = (margin / (width + 2 * margin), top / total, width / (width + 2 * margin))
        ax = fig.add_axes((*box, height / total))
        ax.set_axis_off()
        if isinstance(row, str):
            ax.text(0, 0.5, row, fontsize=8, va="center", transform=ax.transAxes)
        else:
            _draw_strip(ax, row, colormap, slots, slot)
    return fig


def _row_height(row: Panel | str, slot: int) -> int:
    if isinstance(row, str):
        return 16
    if row.axis is not None:
        return max(24, 8 * len(row.data))
    height, width = row.data.shape[1:]
    return min(2 * slot, max(slot // 4, round(slot * int(height) / int(width))))


def _draw_strip(ax: Axes, panel: Panel, colormap: Colormap, slots: int, slot: int) -> None:
    values = canvas.scaled(panel.data, shared=panel.data[0].size == 1)
    ax.set_title("  ·  ".join(panel.title()), loc="left", fontsize=9, pad=3)
    if panel.axis is not None:
        ax.imshow(values, cmap=colormap, vmin=0, vmax=1, aspect="auto", interpolation="auto")
        return
    zoom = max(1, round(slot / (4 * max(values.shape[1:]))))  # so that tiny maps get thin padding
    values = values.repeat(zoom, axis=1).repeat(zoom, axis=2)
    width = values.shape[2]
    pad = max(1, round(width * 4 / slot))
    image = canvas.tiles(values, (1, len(values)), pad, -1.0)
    ax.imshow(image, cmap=colormap, vmin=0, vmax=1, aspect="auto", interpolation="auto")
    ax.set_xlim(-0.5, slots * (width + pad) - pad - 0.5)
    _label_tiles(ax, values, panel.channels, len(values), pad, slot / width, (colormap, 0, 1))


def _label_tiles(
    ax: Axes,
    tiles: Array,
    channels: npt.NDArray[np.int64],
    cols: int,
    pad: int,
    pixels_per_unit: float,
    colors: tuple[Colormap, float, float],
) -> None:
    """Write each tile's channel in its top-left corner, black or white by what lies beneath.

    One text per tile, without a box (a box doubles the cost of drawing the labels).
    """
    height, width = tiles.shape[1:3]
    tile_px = pixels_per_unit * min(height, width)
    if tile_px < _LABEL_MIN_PX or len(tiles) < 2:
        return
    size = float(np.clip(tile_px / 9, 6, 9))
    inset = 2.5 / pixels_per_unit
    for i, (channel, color) in enumerate(zip(channels, _text_colors(tiles, *colors), strict=True)):
        row, col = divmod(i, cols)
        x, y = col * (width + pad) - 0.5 + inset, row * (height + pad) - 0.5 + inset
        ax.text(x, y, str(channel), fontsize=size, color=color, ha="left", va="top", clip_on=True)


def _text_colors(tiles: Array, colormap: Colormap, vmin: float, vmax: float) -> list[str]:
    """Black on light tile corners, white on dark ones."""
    height, width = tiles.shape[1:3]
    corner = tiles[:, : max(1, height // 5), : max(1, width // 3)].reshape(len(tiles), -1)
    finite = np.isfinite(corner)
    level = np.where(finite, corner, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    rgb = colormap((level - vmin) / (vmax - vmin))[:, :3]
    return ["black" if light > 0.55 else "white" for light in rgb @ [0.299, 0.587, 0.114]]


def _check_options(*, order: str, normalize: str, count: tuple[str, int]) -> None:
    canvas.check_choice("order", order, _ORDERS)
    canvas.check_choice("normalize", normalize, _NORMALIZE)
    option, value = count
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(
            f"{option}={value!r} is not valid; use a whole number >= 1",
            option=option,
            value=value,
            valid=("a whole number >= 1",),
        )
