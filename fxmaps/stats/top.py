"""The samples that excite each channel most, with the channel's maps on them.

:func:`top_samples` gathers what :func:`fxmaps.plot_top_images` draws: for the
chosen channels of one node, the dataset indices and scores of their top samples
(from the statistics), the samples themselves, and, when the model is at hand,
the node's maps of those samples (the model runs once, on those samples only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from fxmaps.errors import InputError, OptionError
from fxmaps.extract import FeatureExtractor
from fxmaps.graph import ModelGraph
from fxmaps.stats.channels import ChannelStats

__all__ = ["TopSamples", "top_samples"]

_DEFAULT_CHANNELS = 8


@dataclass(frozen=True)
class TopSamples:
    """The top samples of some channels of one node.

    Attributes:
        layer: The node.
        channels: The channels shown, one row each.
        indices: ``(rows, k)`` dataset indices, best first.
        scores: ``(rows, k)`` their scores.
        images: ``(M, C, H, W)`` the distinct samples among ``indices``, in ``order``.
        order: The dataset index of each of ``images``.
        maps: The node's maps of ``images`` (``(M, channels, ...)``), or ``None``
            without a model.
    """

    layer: str
    channels: tuple[int, ...]
    indices: torch.Tensor
    scores: torch.Tensor
    images: torch.Tensor
    order: tuple[int, ...]
    maps: torch.Tensor | None


def top_samples(
    stats: ChannelStats,
    dataset: Dataset[Any],
    layer: str,
    *,
    channels: Sequence[int] | None = None,
    k: int = 9,
    model: ModelGraph | None = None,
) -> TopSamples:
    """The top ``k`` samples of ``channels`` of ``layer`` (by default the 8 liveliest).

    Raises:
        OptionError: ``k`` below 1, or channels the node does not have.
        InputError: A dataset item that is not an image tensor.
    """
    summary = stats[layer]
    if k < 1:
        raise OptionError(f"k={k} must be at least 1", option="k", value=k, valid=(">= 1",))
    k = min(k, int(summary.top_indices.shape[1]))
    chosen = list(channels) if channels is not None else _liveliest(summary.top_scores)
    bad = [c for c in chosen if not 0 <= c < summary.channels]
    if bad or not chosen:
        raise OptionError(
            f"channels={chosen}: {layer!r} has channels 0..{summary.channels - 1}",
            option="channels",
            value=chosen,
            valid=(f"0..{summary.channels - 1}",),
        )
    indices = summary.top_indices[chosen, :k]
    order = tuple(sorted(set(indices.flatten().tolist())))
    images = torch.stack([_sample(dataset, i) for i in order])
    graph = model if model is not None else stats.graph
    maps = _maps(graph, images, layer) if graph is not None else None
    scores = summary.top_scores[chosen, :k]
    return TopSamples(layer, tuple(chosen), indices, scores, images, order, maps)


def _liveliest(top_scores: torch.Tensor) -> list[int]:
    """The channels with the highest top score, dead ones (no positive score) left out."""
    count = _DEFAULT_CHANNELS
    best = top_scores[:, 0] if top_scores.shape[1] else torch.zeros(top_scores.shape[0])
    alive = torch.nonzero(best > 0).flatten()
    order = alive[torch.argsort(best[alive], descending=True, stable=True)]
    return order[:count].tolist() or list(range(min(count, top_scores.shape[0])))


def _sample(dataset: Dataset[Any], index: int) -> torch.Tensor:
    item = dataset[index]
    value = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(value, torch.Tensor) or value.dim() not in (2, 3):
        raise InputError(
            f"dataset item {index} is not an image tensor (C, H, W)",
            argument="dataset",
            got=type(value).__name__,
        )
    return value if value.dim() == 3 else value.unsqueeze(0)


def _maps(graph: ModelGraph, images: torch.Tensor, layer: str) -> torch.Tensor:
    device = next((p.device for p in graph.model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        maps: torch.Tensor = FeatureExtractor(graph, [layer])(images.to(device))[layer]
    return maps.float().cpu()
