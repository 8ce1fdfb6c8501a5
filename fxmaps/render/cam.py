"""Class activation maps over the images they explain: :func:`plot_cam`.

One panel per sample and method: the image in grey, the map over it in colour, the
class and its score in the panel's title, one colorbar for all (maps are in [0, 1]).
A batch gives a row per sample; several results (methods) give a column each. 1-d maps
(of ``(N, C, L)`` signals) are drawn by :mod:`fxmaps.render.cam_signal`: the signal as
lines over a coloured band that is the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from fxmaps.attribute import CamResult
from fxmaps.errors import InputError
from fxmaps.render import canvas
from fxmaps.render.cam_signal import plot_signal_cam, signals
from fxmaps.render.canvas import Array

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_cam"]

_PANEL = 220  # pixels per panel side


def plot_cam(
    result: CamResult | Sequence[CamResult],
    image: torch.Tensor | npt.NDArray[Any],
    *,
    labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    ncols: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw class activation maps over their images.

    Args:
        result: What :func:`fxmaps.cam` returned, or several results for the same
            images (one per method), drawn side by side.
        image: The images the maps explain: ``(N, C, H, W)`` or ``(C, H, W)`` (a
            tensor as given to the model; each is scaled to its own range for
            display) or ``(H, W, 3)`` / ``(N, H, W, 3)`` arrays. For 1-d maps
            ``(N, L)``, the signals ``(N, C, L)`` (or ``(C, L)`` for one), drawn as
            lines over a band coloured by the map.
        labels: Class names by index (``labels[c]`` in each title).
        alpha: Opacity of the map over the image.
        cmap: A matplotlib colormap for the maps.
        ncols: For one result, samples per row (default: one sample a row); several
            results always give a row per sample and a column per result.
        ax: Draw one sample of one result into this axes.

    Returns:
        The figure. Nothing is shown or saved.

    Raises:
        InputError: Images of another count or size than the maps, or results that
            do not belong together.

    Example:
        >>> import torch, fxmaps
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(2, 3, 16, 16)
        >>> fig = fxmaps.plot_cam(fxmaps.cam(model, x), x)
        >>> len(fig.axes)  # two panels and the colorbar
        3
    """
    results = [result] if isinstance(result, CamResult) else list(result)
    colormap = canvas.colormap(cmap)
    if _checked(results) == 2:  # (N, L): 1-d maps of signals
        drawn = signals(image, results)
        return plot_signal_cam(results, drawn, lambda r, i: _title(r, i, labels),
                               alpha=alpha, colormap=colormap, ncols=ncols, ax=ax)  # fmt: skip
    pictures = _images(image, results)
    if ax is not None:
        fig = ax.get_figure(root=True)
        if fig is None:
            raise InputError("ax belongs to no figure; pass an axes of a figure", argument="ax")
        picture = _panel(ax, pictures[0], results[0], 0, labels, alpha, colormap)
        canvas.colorbar(fig, picture, None, ax)
        return fig
    return _grid(results, pictures, labels, alpha, colormap, ncols)


def _checked(results: list[CamResult]) -> int:
    """The rank of the maps, checked to be the same for every result."""
    if not results:
        raise InputError("plot_cam() needs a CamResult, or a list of them", argument="result")
    shape = tuple(results[0].maps.shape)
    if any(tuple(r.maps.shape) != shape for r in results):
        raise InputError(
            f"plot_cam() draws results side by side for the same images; their maps are "
            f"{[tuple(r.maps.shape) for r in results]}",
            argument="result",
        )
    return len(shape)


def _images(image: torch.Tensor | npt.NDArray[Any], results: list[CamResult]) -> Array:
    """``(N, H, W, 3)`` in [0, 1], checked against the maps."""
    shape = tuple(results[0].maps.shape)
    array = canvas.as_float(image)
    if array.ndim == 3:
        array = array[None]
    if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)
    if array.ndim != 4 or tuple(array.shape[:3]) != shape:
        raise InputError(
            f"image of shape {tuple(canvas.as_float(image).shape)} does not match maps of "
            f"{shape}; pass the batch given to fxmaps.cam",
            argument="image",
            got=str(tuple(array.shape)),
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return canvas.scaled(array, shared=False)


def _title(result: CamResult, index: int, labels: Sequence[str] | None) -> str:
    target = result.targets[index]
    score = float(result.scores[index])
    if target is None:
        return f"{result.method}  score {score:.3g}"
    name = labels[target] if labels is not None and target < len(labels) else f"class {target}"
    return f"{result.method}  {name}  score {score:.3g}"


def _panel(
    ax: Axes,
    picture: Array,
    result: CamResult,
    index: int,
    labels: Sequence[str] | None,
    alpha: float,
    colormap: Any,
) -> Any:
    grey = picture.mean(axis=-1)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    drawn = ax.imshow(
        result.maps[index].numpy(), cmap=colormap, vmin=0, vmax=1, alpha=alpha,
        interpolation="nearest",
    )  # fmt: skip
    ax.set_title(_title(result, index, labels), fontsize=canvas.TITLE_SIZE - 1)
    ax.set_xticks([])
    ax.set_yticks([])
    return drawn


def _grid(
    results: list[CamResult],
    pictures: Array,
    labels: Sequence[str] | None,
    alpha: float,
    colormap: Any,
    ncols: int | None,
) -> Figure:
    cells = [(i, result) for i in range(len(pictures)) for result in results]
    cols = len(results) if len(results) > 1 or ncols is None else max(1, ncols)
    rows = -(-len(cells) // cols)
    width, height = cols * _PANEL + 90, rows * (_PANEL + 24) + 40
    fig = canvas.figure(width, height)
    drawn: Any = None
    for cell, (sample, result) in enumerate(cells):
        row, col = divmod(cell, cols)
        left = (10 + col * _PANEL) / width
        bottom = 1 - (40 + (row + 1) * (_PANEL + 24) - 24) / height
        ax = fig.add_axes((left, bottom, (_PANEL - 12) / width, (_PANEL - 12) / height))
        drawn = _panel(ax, pictures[sample], result, sample, labels, alpha, colormap)
    cax = fig.add_axes(((cols * _PANEL + 20) / width, 0.1, 14 / width, 0.8))
    canvas.colorbar(fig, drawn, cax, fig.axes[0])
    fig.suptitle(f"where the model looks (at {results[0].layer})", fontsize=canvas.TITLE_SIZE)
    return fig
