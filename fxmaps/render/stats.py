"""Figures of dataset-scale statistics: the samples that excite each channel, and histograms.

:func:`plot_top_images` shows, for each chosen channel, its top-k samples with the
channel's activation overlaid as a heat map (the model runs once on those samples).
:func:`plot_channel_stats` shows, per layer, how the channel means and the fractions
of positive activations are spread, with the dead channels counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from fxmaps.errors import InputError, OptionError
from fxmaps.graph import ModelGraph
from fxmaps.render import canvas, overlay
from fxmaps.stats import ChannelStats, top_samples

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_channel_stats", "plot_top_images"]

_CELL = 96  # pixels per sample image
_PAD = 4
_LABEL_BOX = {"facecolor": "black", "alpha": 0.45, "pad": 1, "linewidth": 0}


def plot_top_images(
    stats: ChannelStats,
    dataset: Dataset[Any],
    layer: str,
    *,
    channels: Sequence[int] | None = None,
    k: int = 9,
    model: ModelGraph | None = None,
    cmap: str = "inferno",
) -> Figure:
    """For each channel, a row of the ``k`` samples that excite it most, heat map overlaid.

    Args:
        stats: From :func:`fxmaps.channel_stats` over ``dataset``.
        dataset: The same dataset (items are tensors or ``(tensor, label)``).
        layer: The node whose channels to show.
        channels: Which channels; by default the 8 with the highest top score,
            dead channels left out.
        k: Samples per channel (at most the ``topk`` the statistics kept).
        model: The analysed model, for the heat maps when ``stats`` came from a
            file; without one (and without ``stats.graph``) only the images show.
        cmap: Colormap of the heat maps.
    """
    top = top_samples(stats, dataset, layer, channels=channels, k=k, model=model)
    heat = _heat(top.maps, layer) if top.maps is not None else None
    position = {index: row for row, index in enumerate(top.order)}
    k = int(top.indices.shape[1])
    tiles = np.ones((len(top.channels), k, _CELL, _CELL, 3), dtype=np.float32)
    colormap = canvas.colormap(cmap)
    for r, channel in enumerate(top.channels):
        for c, index in enumerate(top.indices[r].tolist()):
            picture = overlay.photo(top.images[position[index]], size=(_CELL, _CELL))
            if heat is not None:
                picture = overlay.blend(picture, heat[position[index], channel], colormap)
            tiles[r, c] = picture
    return _grid_figure(tiles, list(top.channels), top.indices, top.scores, layer, stats)


def plot_channel_stats(stats: ChannelStats, layers: Sequence[str] | None = None) -> Figure:
    """Per layer, histograms of the channel means and of the fractions of positive values."""
    names = list(layers) if layers is not None else list(stats)
    if not names:
        raise OptionError(
            "no layers to plot; the statistics hold none", option="layers", value=layers
        )
    height = 78 + 205 * len(names)
    fig = canvas.figure(760, height)
    top, bottom = 1 - 60 / height, 48 / height
    grid = fig.add_gridspec(len(names), 2, hspace=0.75, wspace=0.25, top=top, bottom=bottom)
    for row, name in enumerate(names):
        layer = stats[name]
        dead = len(layer.dead)
        means = fig.add_subplot(grid[row, 0])
        means.hist(layer.mean.numpy(), bins=30, color="#4c78a8")
        means.set_title(f"{name}: channel means ({layer.channels} channels)", fontsize=9)
        sparsity = fig.add_subplot(grid[row, 1])
        sparsity.hist(layer.positive.numpy(), bins=30, range=(0, 1), color="#f58518")
        sparsity.set_title(f"{name}: fraction positive ({dead} dead)", fontsize=9)
        means.set_xlabel("mean activation of a channel", fontsize=8)
        sparsity.set_xlabel("fraction of its values above 0", fontsize=8)
        for ax in (means, sparsity):
            ax.set_ylabel("channels", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"channel statistics over {stats.samples} samples", y=1 - 8 / height, fontsize=11)
    return fig


def _heat(maps: torch.Tensor, layer: str) -> npt.NDArray[np.float32]:
    """Each sample's map of ``layer`` at display size, scaled to [0, 1] per sample and channel."""
    if maps.dim() == 2:  # a linear layer: one value per channel, shown as a flat tint
        maps = maps[..., None, None]
    if maps.dim() != 4:
        raise InputError(
            f"{layer!r} gives maps of shape {tuple(maps.shape)}; need (N, C, H, W)",
            argument="layer",
            got=f"maps of shape {tuple(maps.shape)}",
            node=layer,
        )
    return overlay.heat(maps, (_CELL, _CELL))


def _grid_figure(
    tiles: npt.NDArray[np.float32],
    channels: list[int],
    indices: torch.Tensor,
    scores: torch.Tensor,
    layer: str,
    stats: ChannelStats,
) -> Figure:
    rows, cols = tiles.shape[:2]
    cells = tiles.reshape(rows * cols, _CELL, _CELL, 3)
    image = canvas.tiles(cells, (rows, cols), pad=_PAD, fill=1.0)
    left, top, bottom = 70, 40, 8  # the titles sit in the top margin
    width, height = image.shape[1] + left + 10, image.shape[0] + top + bottom
    fig = canvas.figure(width, height)
    ax = fig.add_axes(
        (left / width, bottom / height, image.shape[1] / width, image.shape[0] / height)
    )
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    for r, channel in enumerate(channels):
        y = r * (_CELL + _PAD) + _CELL / 2
        ax.text(-8, y, f"ch {channel}", ha="right", va="center", fontsize=9)
        for c in range(cols):
            x = c * (_CELL + _PAD) + 3
            label = f"#{int(indices[r, c])}  {float(scores[r, c]):.2g}"
            y = r * (_CELL + _PAD) + 3
            ax.text(x, y, label, color="white", fontsize=6.5, va="top", bbox=_LABEL_BOX)
    title = f"{layer}: the samples that excite each channel most"
    fig.text(0.5, 1 - 6 / height, title, ha="center", va="top", fontsize=10)
    note = f"{stats.score} score over {stats.samples} samples; heat: the channel's map"
    fig.text(0.5, 1 - 22 / height, note, ha="center", va="top", fontsize=8, color="0.35")
    return fig
