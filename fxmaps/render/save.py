"""Writing a figure to a file the way fxmaps's own writers do: the same pixels, encoded fast.

matplotlib's ``savefig`` compresses PNGs with zlib's default level (6) and always as
RGBA. For a figure of feature maps, that encoding costs more than drawing it.
:func:`save_figure` renders the figure exactly as ``savefig`` would, then writes the
pixels itself: as RGB when every pixel is opaque, as 8-bit gray when every pixel is
gray (a gray colormap), with zlib level 1. The image is lossless and decodes to the
pixels ``savefig`` would have written; the file is somewhat larger.

Where ``savefig``'s own settings would change the image (``rcParams["savefig.*"]``,
keyword arguments, a canvas that is not Agg) or for any other format, it calls
``savefig``, passing ``compress_level`` to the PNG encoder. A user's own
``fig.savefig`` is left as matplotlib does it.

:func:`figure_pixels` gives the pixels themselves, for writers that encode them
their own way (the report's WebP and palette PNGs). Its ``tight`` crop is
``savefig(bbox_inches="tight")``'s box, cut from one drawing of the figure where
``savefig`` draws it twice (once to measure, once to render).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt

from fxmaps.errors import OptionError
from fxmaps.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_pixels", "save_figure"]

_DEFAULTS = {
    "savefig.dpi": "figure",
    "savefig.facecolor": "auto",
    "savefig.edgecolor": "auto",
    "savefig.transparent": False,
    "savefig.bbox": None,
    "savefig.pad_inches": 0.1,
}


def save_figure(
    figure: Figure,
    path: str | os.PathLike[str] | BinaryIO,
    *,
    format: str | None = None,
    compress_level: int = 1,
    **savefig: Any,
) -> str | os.PathLike[str] | BinaryIO:
    """Write ``figure`` to ``path`` (a file written whole, or a binary file object).

    Args:
        figure: The figure, as fxmaps's plotting functions return it.
        path: Where to write; a path is written to a temporary file, then renamed.
        format: ``png``, ``svg``, ``pdf``, ``jpg``, ...; default: the path's suffix, else PNG.
        compress_level: zlib's level for PNGs, 0 (none) to 9 (smallest, slowest);
            default 1, the fastest that compresses.
        **savefig: More arguments for ``Figure.savefig`` (``dpi``, ``bbox_inches``, ...);
            given any, the figure is written by ``savefig`` itself.

    Returns:
        ``path``.

    Example:
        >>> import io, torch, fxmaps
        >>> fig = fxmaps.plot_feature_maps(torch.rand(1, 4, 8, 8), cmap="gray")
        >>> buffer = io.BytesIO()
        >>> _ = fxmaps.save_figure(fig, buffer)
        >>> buffer.getvalue()[:4]
        b'\\x89PNG'
    """
    if not 0 <= compress_level <= 9:
        raise OptionError(
            f"save_figure: compress_level must be 0 to 9, got {compress_level!r}",
            option="compress_level",
            value=compress_level,
            valid=tuple(str(level) for level in range(10)),
        )
    name = _format(path, format)
    if isinstance(path, str | os.PathLike):
        with atomic_path(path) as temporary, temporary.open("wb") as stream:
            _write(figure, stream, name, compress_level, savefig)
    else:
        _write(figure, path, name, compress_level, savefig)
    return path


def figure_pixels(
    figure: Figure, *, dpi: float | None = None, tight: bool = False, pad_inches: float = 0.1
) -> npt.NDArray[np.uint8]:
    """The RGBA pixels ``figure.savefig(..., dpi=dpi)`` writes, drawn once.

    Args:
        figure: The figure, as fxmaps's plotting functions return it.
        dpi: Draw at this resolution; by default the figure's own.
        tight: Crop to what the figure draws, as ``bbox_inches="tight"`` does, with
            ``pad_inches`` of background kept around it.
        pad_inches: The margin of a ``tight`` crop.

    Returns:
        A ``(height, width, 4)`` array of bytes.

    The figure is drawn once on its Agg canvas and its tight box, the one ``savefig``
    computes, is cut from those pixels: ``savefig`` instead draws the figure once to
    measure the box and again shifted into it, which also moves images off the whole
    pixels fxmaps places them on. Where the pixels could differ from ``savefig``'s in
    more than that (``rcParams["savefig.*"]`` set, a canvas that is not Agg, a drawing
    that reaches past the figure's edge), the pixels come from ``savefig`` itself.

    Example:
        >>> import torch, fxmaps
        >>> from fxmaps.render.save import figure_pixels
        >>> fig = fxmaps.plot_feature_maps(torch.rand(1, 4, 8, 8))
        >>> whole, tight = figure_pixels(fig), figure_pixels(fig, tight=True)
        >>> whole.shape[2], tight.shape[0] <= whole.shape[0], tight.shape[1] <= whole.shape[1]
        (4, True, True)
    """
    resolution = float(figure.dpi if dpi is None else dpi)
    if _plain_settings(figure) and _opaque(figure):
        with _at_dpi(figure, resolution):
            figure.canvas.draw()
            drawn = np.array(figure.canvas.buffer_rgba())  # type: ignore[attr-defined]
            box = _tight_box(figure, drawn.shape, pad_inches) if tight else None
        if not tight:
            return drawn
        if box is not None:
            return _cut(drawn, box, _background(figure))
    return _savefig_pixels(figure, resolution, tight, pad_inches)


@contextlib.contextmanager
def _at_dpi(figure: Figure, dpi: float) -> Iterator[None]:
    """``figure`` at ``dpi`` for the block, as ``savefig(dpi=...)`` sets it."""
    before = figure.dpi
    figure.dpi = dpi
    try:
        yield
    finally:
        figure.dpi = before


def _opaque(figure: Figure) -> bool:
    from matplotlib.colors import to_rgba

    return to_rgba(figure.get_facecolor())[3] == 1.0


def _background(figure: Figure) -> npt.NDArray[np.uint8]:
    """The bytes of a pixel where only the (opaque) figure's background is drawn."""
    from matplotlib.colors import to_rgba

    return np.array([round(255 * c) for c in to_rgba(figure.get_facecolor())], dtype=np.uint8)


def _tight_box(
    figure: Figure, shape: tuple[int, ...], pad_inches: float
) -> tuple[int, int, int, int] | None:
    """``savefig``'s tight box on the drawn canvas, in pixels (left, top, width, height).

    ``None`` where what is drawn reaches past the canvas: ``savefig`` would show what
    lies there. The margin may: there, ``savefig`` shows the figure's background.
    """
    height, width = shape[:2]
    dpi = figure.dpi
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    content = figure.get_tightbbox(renderer)
    if content.x0 < 0 or content.y0 < 0 or content.x1 * dpi > width or content.y1 * dpi > height:
        return None
    box = content.padded(pad_inches)
    # savefig's canvas for the box: its size in whole pixels, its origin at the box's.
    box_width, box_height = int(box.width * dpi), int(box.height * dpi)
    return round(box.x0 * dpi), round(height - box.y0 * dpi - box_height), box_width, box_height


def _cut(
    drawn: npt.NDArray[np.uint8], box: tuple[int, int, int, int], background: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """The ``box`` (left, top, width, height) of ``drawn``; ``background`` where it lies outside."""
    left, top, width, height = box
    cut = np.empty((height, width, drawn.shape[2]), dtype=np.uint8)
    cut[...] = background
    rows = slice(max(top, 0), min(top + height, drawn.shape[0]))
    cols = slice(max(left, 0), min(left + width, drawn.shape[1]))
    cut[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = drawn[
        rows, cols
    ]
    return cut


def _savefig_pixels(
    figure: Figure, dpi: float, tight: bool, pad_inches: float
) -> npt.NDArray[np.uint8]:
    from PIL import Image

    buffer = io.BytesIO()
    crop: dict[str, Any] = {"bbox_inches": "tight", "pad_inches": pad_inches} if tight else {}
    figure.savefig(buffer, format="png", dpi=dpi, **crop)
    buffer.seek(0)
    with Image.open(buffer) as picture:
        return np.asarray(picture.convert("RGBA"))


def _format(path: str | os.PathLike[str] | BinaryIO, given: str | None) -> str:
    if given:
        return given.lower().lstrip(".")
    if isinstance(path, str | os.PathLike):
        return Path(path).suffix.lower().lstrip(".") or "png"
    return "png"


def _write(
    figure: Figure, stream: BinaryIO, name: str, level: int, savefig: dict[str, Any]
) -> None:
    if name == "png" and not savefig and _plain_settings(figure):
        _write_png(figure, stream, level)
        return
    if name == "png":
        pil = {"compress_level": level, **savefig.pop("pil_kwargs", {})}
        savefig = {**savefig, "pil_kwargs": pil}
    figure.savefig(stream, format=name, **savefig)


def _plain_settings(figure: Figure) -> bool:
    """Whether ``savefig`` would write exactly what the Agg canvas draws."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    params = cast("Mapping[str, Any]", mpl.rcParams)  # its stubs take known keys only
    settings = all(params[key] == value for key, value in _DEFAULTS.items())
    return settings and isinstance(figure.canvas, FigureCanvasAgg)


def _write_png(figure: Figure, stream: BinaryIO, level: int) -> None:
    import matplotlib as mpl
    from PIL import Image, PngImagePlugin

    figure.canvas.draw()
    pixels = _smallest_mode(figure.canvas.buffer_rgba())  # type: ignore[attr-defined]
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"Matplotlib version{mpl.__version__}, https://matplotlib.org/")
    dpi = float(figure.dpi)
    Image.fromarray(pixels).save(
        stream, format="png", compress_level=level, dpi=(dpi, dpi), pnginfo=info
    )


def _smallest_mode(buffer: Any) -> npt.NDArray[Any]:
    """The pixels as gray, RGB or RGBA: the fewest channels that keep every value."""
    rgba = np.asarray(buffer)
    if not (rgba[..., 3] == 255).all():
        return rgba
    red, green, blue = rgba[..., 0], rgba[..., 1], rgba[..., 2]
    if (red == green).all() and (green == blue).all():
        return np.ascontiguousarray(red)
    return np.ascontiguousarray(rgba[..., :3])
