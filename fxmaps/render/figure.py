"""The figure every fxmaps plot returns: a matplotlib ``Figure`` that shows itself in Jupyter.

fxmaps draws without pyplot (no global state, no windows, nothing leaked in a loop), so
IPython's matplotlib integration, which only knows pyplot's figures once a backend is
active, would print ``<Figure size ... with 1 Axes>``. :class:`Figure` adds
``_repr_png_``: a notebook shows the figure as a PNG whatever the backend (Agg, inline,
widget), and a script sees an ordinary ``Figure``.

This module imports matplotlib; :func:`fxmaps.render.canvas.figure` imports it when the
first figure is made.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as _MatplotlibFigure

__all__ = ["Figure", "png_bytes"]


class Figure(_MatplotlibFigure):
    """A ``matplotlib.figure.Figure`` with an Agg canvas that shows itself as a PNG in Jupyter."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def png_bytes(figure: _MatplotlibFigure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, at its own dpi unless ``dpi`` is given."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi or figure.dpi, facecolor=figure.get_facecolor())
    return buffer.getvalue()
