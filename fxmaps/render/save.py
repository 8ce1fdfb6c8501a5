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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from fxmaps.errors import OptionError
from fxmaps.files import atomic_path

if TYPE_CHECKING:
    import numpy.typing as npt
    from matplotlib.figure import Figure

__all__ = ["save_figure"]

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
    import numpy as np

    rgba = np.asarray(buffer)
    if not (rgba[..., 3] == 255).all():
        return rgba
    red, green, blue = rgba[..., 0], rgba[..., 1], rgba[..., 2]
    if (red == green).all() and (green == blue).all():
        return np.ascontiguousarray(red)
    return np.ascontiguousarray(rgba[..., :3])
