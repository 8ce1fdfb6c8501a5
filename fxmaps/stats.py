"""Per-channel statistics over a dataset, and the samples that excite each channel most.

One streaming pass: each batch's maps are reduced to per-channel running moments
(count, mean, M2 by Chan's parallel update), maxima, positive counts and a top-k of
per-sample scores, then dropped. Memory is bounded by channels × k, not by the dataset.

Under ``torchrun`` (or with ``torch.distributed`` initialised) each rank reads its
shard through a ``DistributedSampler`` and the ranks merge their partial results with
collectives: gloo on the CPU, nccl on CUDA. The sampler pads the last shards with
samples from the start of the dataset; those padding duplicates are masked out, so
every sample counts once. Merges run in rank order and top-k ties break by dataset
index, so a run on N processes matches a single-process run (means to float
tolerance, top-k indices exactly).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fxmaps._files import atomic_path
from fxmaps.analyze import analyze
from fxmaps.errors import InputError, OptionError
from fxmaps.extract import FeatureExtractor
from fxmaps.graph import ModelGraph
from fxmaps.select import Selection

__all__ = ["ChannelStats", "LayerStats", "channel_stats", "share_weights"]

Score = Literal["max", "mean"]
_FORMAT = "fxmaps.channel_stats/1"


@dataclass(frozen=True)
class LayerStats:
    """Per-channel statistics of one node over a dataset; every tensor has C rows."""

    mean: torch.Tensor
    """Mean activation over samples and positions, float64."""
    std: torch.Tensor
    """Population standard deviation over samples and positions, float64."""
    max: torch.Tensor
    positive: torch.Tensor
    """Fraction of activations above zero."""
    top_indices: torch.Tensor
    """``(C, k)`` dataset indices of the samples with the highest scores, best first."""
    top_scores: torch.Tensor
    """``(C, k)`` their scores (spatial max or mean of the channel)."""

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dead(self) -> list[int]:
        """Channels never above zero on any sample."""
        return [int(c) for c in torch.nonzero(self.positive == 0).flatten()]


class ChannelStats(Mapping[str, LayerStats]):
    """Channel statistics of several nodes: ``stats[node]`` is a :class:`LayerStats`."""

    def __init__(
        self,
        layers: Mapping[str, LayerStats],
        *,
        samples: int,
        topk: int,
        score: Score,
        graph: ModelGraph | None = None,
    ) -> None:
        self._layers = dict(layers)
        self.samples = samples
        self.topk = topk
        self.score: Score = score
        self.graph = graph
        """The analysed model the statistics came from (not saved; ``None`` after load)."""

    def __getitem__(self, name: str) -> LayerStats:
        try:
            return self._layers[name]
        except KeyError:
            raise InputError(
                f"no statistics for {name!r}; these nodes have them: {', '.join(self._layers)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def dead(self) -> dict[str, list[int]]:
        """The dead channels of every node that has some."""
        return {name: layer.dead for name, layer in self._layers.items() if layer.dead}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the statistics to ``path`` (a ``torch.save`` file; written atomically)."""
        payload = {
            "format": _FORMAT,
            "samples": self.samples,
            "topk": self.topk,
            "score": self.score,
            "layers": {
                name: {f.name: getattr(layer, f.name) for f in fields(LayerStats)}
                for name, layer in self._layers.items()
            },
        }
        with atomic_path(path) as temporary:
            torch.save(payload, temporary)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ChannelStats:
        """Read statistics written by :meth:`save`."""
        if not Path(path).is_file():
            raise InputError(f"no channel-statistics file at {str(path)!r}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for foreign files
            raise InputError(f"{str(path)!r} is not a file written by ChannelStats.save") from err
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise InputError(f"{str(path)!r} is not a file written by ChannelStats.save")
        layers = {name: LayerStats(**values) for name, values in payload["layers"].items()}
        return cls(layers, samples=payload["samples"], topk=payload["topk"], score=payload["score"])

    def __repr__(self) -> str:
        return f"<ChannelStats of {len(self)} nodes over {self.samples} samples, top {self.topk}>"


def channel_stats(
    model_or_graph: nn.Module | ModelGraph,
    dataset: Dataset[Any],
    *,
    layers: Selection = "conv",
    batch_size: int = 64,
    num_workers: int = 0,
    topk: int = 9,
    score: Score = "max",
    device: torch.device | str | None = None,
    progress: bool = True,
) -> ChannelStats:
    """Per-channel statistics of ``layers`` over ``dataset``, in one streaming pass.

    Args:
        model_or_graph: The model (analysed on the first sample) or its graph.
        dataset: A map-style dataset whose items are input tensors or tuples
            whose first element is the input (``(image, label)``).
        layers: Which nodes (see :func:`fxmaps.extract`).
        batch_size: Samples per forward pass (per process when distributed).
        num_workers: DataLoader worker processes.
        topk: How many top samples to keep per channel.
        score: A sample's score for a channel: its spatial ``"max"`` or ``"mean"``.
        device: Where to send the inputs; by default where the model's parameters
            are. The model must be there already.

    Channels are dimension 1 of each map: ``(N, C, ...)`` for convs, ``(N, C)`` for
    linears. Each batch is reduced in the maps' precision (float32 at least) where
    the maps are; the running statistics are kept in float64 on the CPU.
        progress: Show a progress bar (on rank 0 only).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
        >>> data = torch.utils.data.TensorDataset(torch.randn(20, 1, 8, 8))
        >>> stats = channel_stats(net, data, layers="conv", topk=3, progress=False)
        >>> stats["0"].top_indices.shape
        torch.Size([4, 3])
    """
    if topk < 1 or batch_size < 1 or num_workers < 0:
        raise OptionError(
            f"topk={topk}, batch_size={batch_size} and num_workers={num_workers}: "
            "topk and batch_size must be at least 1, num_workers at least 0"
        )
    if score not in ("max", "mean"):
        raise OptionError(f"score={score!r}; choose 'max' or 'mean'")
    size = _length(dataset)
    world = _World.join()
    graph = _graph(model_or_graph, dataset, device)
    run_on = torch.device(device) if device is not None else _device_of(graph.model)
    world.check_same_weights(graph.model)
    extractor = FeatureExtractor(graph, layers)
    sampler: DistributedSampler[tuple[int, torch.Tensor]] = DistributedSampler(
        _Indexed(dataset), num_replicas=world.size, rank=world.rank, shuffle=False
    )
    loader = DataLoader(
        _Indexed(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers
    )
    running: dict[str, _Running] = {}
    seen = 0  # samples this rank has taken from its sampler, padding included
    with torch.no_grad():
        for indices, inputs in _progress(loader, progress and world.rank == 0):
            positions = world.rank + world.size * torch.arange(seen, seen + len(indices))
            seen += len(indices)
            keep = positions < size  # the sampler's padding repeats the first samples
            if not keep.any():
                continue
            maps = extractor(inputs.to(run_on))
            for name in extractor.names:
                values = maps[name].detach()[keep.to(maps[name].device)]
                state = running.setdefault(name, _Running(int(values.shape[1]), topk))
                state.update(values, indices[keep], score)
    merged = {
        name: world.merge(running.get(name) or _Running(_channels(graph, name), topk))
        for name in extractor.names
    }
    return ChannelStats(merged, samples=size, topk=topk, score=score, graph=graph)


class _Indexed(Dataset[tuple[int, torch.Tensor]]):
    """Items as ``(dataset index, input)``, so every sample's global index is known."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return _length(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        item = self.dataset[index]
        value = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"dataset item {index} holds a {type(value).__name__}, not a tensor; "
                "give the dataset a transform that returns tensors (e.g. ToTensor)"
            )
        return index, value


class _Running:
    """One node's running per-channel moments, maxima and top-k, on the CPU in float64."""

    def __init__(self, channels: int, k: int) -> None:
        self.count = torch.zeros(channels, dtype=torch.float64)
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)
        self.max = torch.full((channels,), -torch.inf, dtype=torch.float64)
        self.positive = torch.zeros(channels, dtype=torch.float64)
        self.top_scores = torch.empty(channels, 0, dtype=torch.float64)
        self.top_indices = torch.empty(channels, 0, dtype=torch.int64)
        self.k = k

    def update(self, maps: torch.Tensor, indices: torch.Tensor, score: Score) -> None:
        # Views and single-pass reductions in the maps' own precision, on their device:
        # this runs once per batch and node, so it must cost little next to the forward.
        values = maps.flatten(2) if maps.dim() > 2 else maps.unsqueeze(-1)  # (N, C, positions)
        if not values.is_floating_point() or values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()
        # Reduce along the contiguous positions first; then combine the (N, C) per-sample
        # moments in float64 (equal counts per sample, so Chan's merge is a plain sum).
        var, mean = torch.var_mean(values, dim=2, correction=0)
        positions = values.shape[2]
        sample_mean, sample_var = mean.double().cpu(), var.double().cpu()
        batch_mean = sample_mean.mean(dim=0)
        spread = ((sample_mean - batch_mean) ** 2).sum(dim=0)
        m2 = positions * (sample_var.sum(dim=0) + spread)
        count = torch.full_like(batch_mean, float(values.shape[0] * positions))
        self.count, self.mean, self.m2 = _combine(
            (self.count, self.mean, self.m2), (count, batch_mean, m2)
        )
        peaks = values.amax(dim=2).double().cpu()  # (N, C)
        self.max = torch.maximum(self.max, peaks.amax(dim=0))
        self.positive += (values > 0).sum(dim=2).sum(dim=0).double().cpu()
        scores = peaks if score == "max" else sample_mean
        batch_indices = indices.to(torch.int64).expand(scores.shape[1], -1)
        self.top_scores, self.top_indices = _best(
            torch.cat([self.top_scores, scores.T], dim=1),
            torch.cat([self.top_indices, batch_indices], dim=1),
            self.k,
        )


def _combine(
    a: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    b: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chan et al.'s merge of (count, mean, M2) moments."""
    count_a, mean_a, m2_a = a
    count_b, mean_b, m2_b = b
    count = count_a + count_b
    safe = torch.where(count > 0, count, torch.ones_like(count))
    delta = mean_b - mean_a
    mean = mean_a + delta * count_b / safe
    m2 = m2_a + m2_b + delta**2 * count_a * count_b / safe
    return count, mean, m2


def _best(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k highest scores, ties broken by the lower index."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    scores, indices = scores.gather(1, by_index), indices.gather(1, by_index)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), indices.gather(1, order)


@dataclass(frozen=True)
class _World:
    """This process's place among the processes that share the work."""

    rank: int
    size: int
    backend: str | None

    @classmethod
    def join(cls) -> _World:
        """Join ``torch.distributed`` if initialised or launched by torchrun; else alone."""
        import torch.distributed as dist

        if not dist.is_available():
            return cls(0, 1, None)
        if not dist.is_initialized():
            if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
                return cls(0, 1, None)
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()))

    def check_same_weights(self, model: nn.Module) -> None:
        """Refuse to merge statistics of models whose weights differ between processes."""
        if self.size == 1:
            return
        tensors = [*model.parameters(), *model.buffers()]
        local = torch.tensor([float(t.detach().double().sum()) for t in tensors] or [0.0])
        gathered = self._all_gather(local.double(), self._device())
        if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
            raise InputError(
                "the model's weights differ between the processes, so their statistics "
                "cannot be merged; load the same weights on every rank, or call "
                "fxmaps.stats.share_weights(model) first (fxmaps stats does)"
            )

    def _device(self) -> torch.device | None:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return None

    def merge(self, running: _Running) -> LayerStats:
        """All ranks' partial statistics, combined (a collective: every rank calls it)."""
        if self.size > 1:
            running = self._gathered(running)
        count = torch.where(running.count > 0, running.count, torch.ones_like(running.count))
        return LayerStats(
            mean=running.mean,
            std=(running.m2 / count).sqrt(),
            max=running.max,
            positive=running.positive / count,
            top_indices=running.top_indices,
            top_scores=running.top_scores,
        )

    def _gathered(self, running: _Running) -> _Running:
        import torch.distributed as dist

        device = (
            torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else None
        )
        channels, k = running.mean.shape[0], running.k
        # Pad each rank's top-k to k columns so every rank sends the same shape.
        pad = k - running.top_scores.shape[1]
        scores = torch.cat([running.top_scores, torch.full((channels, pad), -torch.inf)], dim=1)
        indices = torch.cat(
            [running.top_indices, torch.full((channels, pad), torch.iinfo(torch.int64).max)], dim=1
        )
        local = [running.count, running.mean, running.m2, running.max, running.positive, scores]
        parts = [self._all_gather(t.to(torch.float64), device) for t in local]
        index_parts = self._all_gather(indices, device)
        merged = _Running(channels, k)
        for rank in range(self.size):  # in rank order, so every run merges the same way
            moments = (parts[0][rank], parts[1][rank], parts[2][rank])
            merged.count, merged.mean, merged.m2 = _combine(
                (merged.count, merged.mean, merged.m2), moments
            )
            merged.max = torch.maximum(merged.max, parts[3][rank])
            merged.positive += parts[4][rank]
        all_scores = torch.cat(parts[5], dim=1)
        all_indices = torch.cat(index_parts, dim=1)
        merged.top_scores, merged.top_indices = _best(all_scores, all_indices, k)
        real = merged.top_indices != torch.iinfo(torch.int64).max
        keep = int(real.sum(dim=1).min())  # fewer samples than k: drop the padding
        merged.top_scores = merged.top_scores[:, :keep]
        merged.top_indices = merged.top_indices[:, :keep]
        dist.barrier()
        return merged

    def _all_gather(self, tensor: torch.Tensor, device: torch.device | None) -> list[torch.Tensor]:
        import torch.distributed as dist

        local = tensor.to(device) if device is not None else tensor
        gathered = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(gathered, local.contiguous())
        return [g.cpu() for g in gathered]


def share_weights(model: nn.Module) -> int:
    """Give every process rank 0's weights (under torchrun); return this process's rank.

    Joins ``torch.distributed`` the way :func:`channel_stats` does. Alone, it changes
    nothing and returns 0.
    """
    world = _World.join()
    if world.size > 1:
        import torch.distributed as dist

        device = world._device()
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                shared = tensor.detach().to(device) if device is not None else tensor.detach()
                dist.broadcast(shared, src=0)
                tensor.copy_(shared)
    return world.rank


def _channels(graph: ModelGraph, name: str) -> int:
    """Channels of a node this rank saw no sample of (more ranks than samples)."""
    shape = graph[name].out_shape
    if not (isinstance(shape, tuple) and len(shape) >= 2 and isinstance(shape[1], int)):
        raise InputError(f"node {name!r} has no channel dimension to take statistics of")
    return shape[1]


def _length(dataset: Dataset[Any]) -> int:
    if not isinstance(dataset, Sized):
        raise InputError(
            f"{type(dataset).__name__} has no len(); channel_stats needs a map-style dataset"
        )
    if len(dataset) == 0:
        raise InputError("the dataset is empty")
    return len(dataset)


def _graph(
    model_or_graph: nn.Module | ModelGraph, dataset: Dataset[Any], device: Any
) -> ModelGraph:
    if isinstance(model_or_graph, ModelGraph):
        return model_or_graph
    _, first = _Indexed(dataset)[0]
    run_on = torch.device(device) if device is not None else _device_of(model_or_graph)
    return analyze(model_or_graph, first.unsqueeze(0).to(run_on))


def _device_of(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()][:1]:
        return tensor.device
    return torch.device("cpu")


def _progress(loader: DataLoader[Any], show: bool) -> Any:
    if not show:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc="channel stats", unit="batch")
