"""Figures as small embedded images: ``data:`` URIs of a WebP or a 256-colour PNG.

A mosaic of large smooth tiles (a first conv's maps) compresses best as lossy
WebP; a mosaic of many small flat tiles, or a filter grid, as a palette PNG. Each
figure is encoded both ways and the smaller one kept, so a report stays a few
megabytes where plain PNGs took several times that.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from PIL import Image, features

from fxmaps.render.save import figure_pixels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_uri", "image_uri"]

_WEBP_QUALITY = 82
_MARGIN = 0.04  # inches of white kept around a figure's drawn content


def figure_uri(figure: Figure, *, tight: bool = True, dpi: float | None = None) -> str:
    """``figure`` cropped to what it draws (``tight``), as a compact ``data:`` URI.

    The figure is drawn once: :func:`fxmaps.render.save.figure_pixels` cuts savefig's
    tight box from that drawing (``savefig(bbox_inches="tight")`` would draw it twice).

    ``dpi`` draws it at another resolution than its own (fewer bytes for a figure
    the page shows small).

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure = Figure(figsize=(1, 1))
        >>> _ = figure.add_subplot().imshow([[0, 1], [1, 0]])
        >>> figure_uri(figure).startswith(("data:image/webp;base64,", "data:image/png;base64,"))
        True
    """
    pixels = figure_pixels(figure, dpi=dpi, tight=tight, pad_inches=_MARGIN)  # drawn once
    return image_uri(Image.fromarray(pixels).convert("RGB"))


def image_uri(picture: Image.Image) -> str:
    """The smaller of ``picture`` as lossy WebP (where Pillow has it) and as a palette PNG."""
    encoded = [_encode(picture.quantize(256, dither=Image.Dither.NONE), "PNG", optimize=True)]
    if features.check("webp"):
        encoded.append(_encode(picture, "WEBP", quality=_WEBP_QUALITY, method=4))
    data, mime = min(encoded, key=lambda pair: len(pair[0]))
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _encode(picture: Image.Image, fmt: str, **options: object) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue(), f"image/{fmt.lower()}"
