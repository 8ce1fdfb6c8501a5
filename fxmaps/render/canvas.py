"""Shared figure plumbing for the render modules: pyplot-free figures, tiling, colormaps,
and images drawn by whole-number scales without resampling (:func:`show`, :func:`place`).

Nothing here is public API; :mod:`fxmaps.render.maps` and :mod:`fxmaps.render.filters`
draw with it.
"""

from __future__ import annotations

import functools
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
    from matplotlib.backend_bases import RendererBase
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage
    from matplotlib.transforms import Affine2D

Array = npt.NDArray[np.float32]
MapLike = torch.Tensor | npt.NDArray[Any]
DPI = 100
TITLE_SIZE = 10
BAD_COLOR = "#ff00ff"  # non-finite values, in no common colormap
FIT = (480, 1100)  # images are enlarged by whole factors towards 480 px, shrunk past 1100
MIN_SIDE = 200  # ... and enlarged further so that their short side gets this many pixels
BESIDE_GAP = 12  # pixels between an axes and one beside it (the input image)


def as_float(value: MapLike) -> Array:
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise InputError(
                f"cannot draw a complex map ({value.dtype}); pass .abs() or .real",
                got=str(value.dtype),
            )
        return value.detach().to(device="cpu", dtype=torch.float32).numpy()
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"cannot draw an array of dtype {value.dtype}: {err}", got=str(value.dtype)
        ) from err


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
    """A pyplot-free figure with an Agg canvas, ``width_px`` by ``height_px`` at ``DPI``,
    that shows itself in Jupyter (:class:`fxmaps.render.figure.Figure`)."""
    from fxmaps.render.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")


def axes(
    ax: Axes | None,
    shape: tuple[int, ...],
    scale: float,
    title: Sequence[str],
    *,
    colorbar: bool = False,
    ticks: bool = False,
    before: int = 0,
) -> tuple[Figure, Axes, Axes | None]:
    """``ax`` and its figure, or a new figure whose axes shows ``shape`` at ``scale``.

    The title is the first line of ``title``, then the others joined and wrapped.
    ``before`` pixels are kept free left of the axes, for :func:`beside`.
    """
    if ax is not None:
        fig = ax.get_figure(root=True)
        if fig is None:
            raise _orphan_axes()
        ax.set_title(wrapped(title, 80), fontsize=TITLE_SIZE)
        return fig, ax, None
    height, width = round(shape[0] * scale), round(shape[1] * scale)
    left, bottom = (48, 40) if ticks else (10, 10)
    left += before + BESIDE_GAP * bool(before)
    right = 10 + 70 * colorbar
    total_w = max(width + left + right, 380)
    left += (total_w - width - left - right) // 2  # centre a narrow image
    text = wrapped(title, (total_w - 20) // 7)
    top = 14 + 16 * (text.count("\n") + 1)
    total_h = height + top + bottom
    fig = figure(total_w, total_h)
    ax = fig.add_axes((left / total_w, bottom / total_h, width / total_w, height / total_h))
    ax.set_title(text, fontsize=TITLE_SIZE)
    if not colorbar:
        return fig, ax, None
    cax = fig.add_axes(
        ((left + width + 12) / total_w, bottom / total_h, 14 / total_w, height / total_h)
    )
    return fig, ax, cax


def beside(fig: Figure, ax: Axes, width_px: int, title: str) -> Axes:
    """An axes ``width_px`` wide left of ``ax``, as tall, in the room ``axes(before=)`` kept."""
    box = ax.get_position()
    width, _ = fig.get_size_inches() * fig.dpi
    left = box.x0 - (width_px + BESIDE_GAP) / width
    other = fig.add_axes((left, box.y0, width_px / width, box.height))
    other.set_axis_off()
    other.set_title(title, fontsize=TITLE_SIZE - 1)
    return other


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


def show(ax: Axes, image: Array, colormap: Colormap, vmin: float, vmax: float) -> AxesImage:
    """Add ``image`` to ``ax`` as ``imshow`` would, as an image that can skip resampling.

    Call :func:`place` once the axes has its final position (after a colorbar).
    """
    picture = _pixel_image_type()(ax, cmap=colormap, origin="upper", interpolation="nearest")
    picture.set_data(image)
    picture.set_clim(vmin, vmax)
    picture.set_clip_path(ax.patch)
    ax.add_image(picture)
    ax.set_aspect("equal")
    picture.set_extent(picture.get_extent())
    return picture


def place(ax: Axes, picture: AxesImage) -> float:
    """Show ``picture`` at the largest whole-number scale that fits ``ax``, on whole pixels.

    The rest of the axes (meant to be off) stays plain background, and the title moves
    down to the image. An image larger than the axes is shrunk to fit instead, and
    resampled. Returns the screen pixels per image pixel at the figure's dpi.
    """
    height, width = picture.get_size()
    parent = ax.get_figure(root=False)
    if parent is None:
        raise _orphan_axes()
    box = ax.get_position(original=True).transformed(parent.transSubfigure)
    fit = float(min(box.width / width, box.height / height))
    zoom = math.floor(fit + 1e-6)
    if zoom < 1:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        picture.set_interpolation("auto")
        return fit
    left = round(box.x0 + (box.width - zoom * width) / 2)
    top = round(box.y1 - (box.height - zoom * height) / 2)
    x0, y0 = -0.5 - (left - box.x0) / zoom, -0.5 - (box.y1 - top) / zoom
    ax.set_xlim(x0, x0 + box.width / zoom)
    ax.set_ylim(y0 + box.height / zoom, y0)
    # A title placed by hand also spares matplotlib its search for x-axis decorations
    # to avoid, which builds tick objects that an axis turned off never draws.
    ax.set_title(ax.get_title(), fontsize=TITLE_SIZE, y=(top - box.y0) / box.height)
    return float(zoom)


@functools.cache
def _pixel_image_type() -> type[AxesImage]:
    from matplotlib.image import AxesImage
    from matplotlib.transforms import Affine2D

    class PixelImage(AxesImage):
        """An image that, drawn at a whole-number scale on whole pixels, skips resampling.

        There it colour-maps its values once, straight to bytes, and repeats each pixel
        by the scale: the pixels that nearest-neighbour resampling gives, without its
        float RGBA copies and the pass through Agg's resampler. Anywhere else (another
        scale, a zoomed view, alpha, a vector backend's magnification) it is an
        ordinary ``AxesImage``.
        """

        def make_image(
            self, renderer: RendererBase, magnification: float = 1.0, unsampled: bool = False
        ) -> tuple[npt.NDArray[np.uint8], float, float, Affine2D]:
            values = self.get_array()
            placed = None if unsampled or magnification != 1.0 else _on_pixels(self)
            if values is None or placed is None:
                return super().make_image(renderer, magnification, unsampled)
            zoom, left, bottom = placed
            rgba: npt.NDArray[np.uint8] = self.to_rgba(values[::-1], bytes=True)  # Agg: bottom up
            if zoom > 1:
                rgba = rgba.repeat(zoom, axis=0).repeat(zoom, axis=1)
            to_output = Affine2D().translate(0, -values.shape[0]).scale(zoom, -zoom)
            return rgba, left, bottom, to_output

        def __reduce__(self) -> tuple[Any, ...]:  # pickle finds no class made in a function
            return _empty_pixel_image, (), self.__getstate__()  # type: ignore[attr-defined]

    return PixelImage


def _empty_pixel_image() -> AxesImage:
    """A bare pixel image for pickle to fill in."""
    kind = _pixel_image_type()
    return kind.__new__(kind)


def _on_pixels(picture: AxesImage) -> tuple[int, float, float] | None:
    """The whole-number scale and the bottom-left pixel of ``picture``, if it has both.

    None where it has not, or where plain resampling would do more than copy pixels:
    alpha, another interpolation or origin, a view that cuts the image.
    """
    from matplotlib.transforms import Bbox

    transform = picture.get_transform()
    if (
        picture.get_alpha() is not None
        or picture.get_interpolation() not in ("nearest", "none")
        or picture.origin != "upper"
        or not transform.is_affine
    ):
        return None
    height, width = picture.get_size()
    x1, x2, y1, y2 = picture.get_extent()
    box = Bbox([[x1, y1], [x2, y2]]).transformed(transform)
    zoom = round(box.width / width)
    misses = (box.x0, box.y0, box.width - zoom * width, box.height - zoom * height)
    if zoom < 1 or max(abs(value - round(value)) for value in misses) > 1e-4:
        return None
    figure = picture.get_figure(root=True)
    clip = (picture.get_clip_box() or picture.axes.bbox) if picture.get_clip_on() else None
    view = (clip or (figure.bbox if figure else box)).padded(1e-4)
    if not (view.contains(box.x0, box.y0) and view.contains(box.x1, box.y1)):
        return None
    return zoom, float(round(box.x0)), float(round(box.y0))


def grid(count: int, ncols: int | None) -> tuple[int, int]:
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise OptionError(
            f"ncols={ncols!r} is not valid; use a whole number >= 1, or None",
            option="ncols",
            value=ncols,
            valid=("a whole number >= 1", "None"),
        )
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
        raise OptionError(
            f"cmap={name!r} is not a matplotlib colormap{hint}",
            option="cmap",
            value=name,
            valid=tuple(matplotlib.colormaps),
        ) from None
    lut = base(np.linspace(0, 1, 64))[:, :3]
    near_white = float(np.abs(lut - 1).max(axis=1).min()) < 0.15
    # Tiles use "under" for the padding between them and "over" for empty cells.
    return base.with_extremes(bad=BAD_COLOR, under="0.8" if near_white else "white", over="white")


def _orphan_axes() -> InputError:
    return InputError(
        "ax belongs to no figure; create it with fig.add_subplot()",
        argument="ax",
        got="axes of no figure",
    )


def check_choice(option: str, value: object, valid: Sequence[str]) -> None:
    if value not in valid:
        raise OptionError(
            f"{option}={value!r} is not valid; use one of {', '.join(map(repr, valid))}",
            option=option,
            value=value,
            valid=tuple(valid),
        )
