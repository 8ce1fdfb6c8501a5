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
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from fxmaps.errors import InputError, OptionError
from fxmaps.extract.extractor import FeatureExtractor
from fxmaps.files import atomic_path, unreadable
from fxmaps.graph import ModelGraph, Selection, analyze
from fxmaps.graph.checks import check_module
from fxmaps.progress import progress as progress_bar
from fxmaps.stats.running import Running, Score, Scratch
from fxmaps.stats.stored import FORMAT, bad_stats, checked_stats
from fxmaps.stats.world import World
from fxmaps.trace.inputs import map_tensors
from fxmaps.trace.state import preserved_state

__all__ = ["ChannelStats", "LayerStats", "channel_stats"]


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
                f"no statistics for {name!r}; these nodes have them: {', '.join(self._layers)}",
                argument="name",
                got=name,
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
            "format": FORMAT,
            "samples": self.samples,
            "topk": self.topk,
            "score": self.score,
            "layers": {
                name: {f.name: getattr(layer, f.name) for f in fields(LayerStats)}
                for name, layer in self._layers.items()
            },
        }
        with atomic_path(path) as temporary, temporary.open("wb") as file:
            torch.save(payload, file)  # a file object: a full disk is the OSError behind torch's
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ChannelStats:
        """Read statistics written by :meth:`save`; never executes pickled code.

        Raises:
            InputError: No file at ``path``, or one whose content is not what ``save``
                writes (the message names the bad entry).
        """
        if not Path(path).is_file():
            raise InputError(
                f"no channel-statistics file at {str(path)!r}", argument="path", got=str(path)
            )
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for foreign files
            raise bad_stats(path, unreadable(err)) from err
        layers = {
            name: LayerStats(**values) for name, values in checked_stats(path, payload).items()
        }
        return cls(layers, samples=payload["samples"], topk=payload["topk"], score=payload["score"])

    def _repr_html_(self) -> str:
        """A table of the nodes and their channels, for Jupyter."""
        from fxmaps.render.notebook import stats_html  # a display method: drawing is render's

        return stats_html(self)

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
    train: bool | None = None,
) -> ChannelStats:
    """Per-channel statistics of ``layers`` over ``dataset``, in one streaming pass.

    Args:
        model_or_graph: The model (analysed on the first sample) or its graph.
        dataset: A map-style dataset whose items are input tensors (or dicts of
            tensors, the keyword arguments of a model that takes them), or tuples
            whose first element is the input (``(image, label)``).
        layers: Which nodes (see :func:`fxmaps.extract`).
        batch_size: Samples per forward pass (per process when distributed).
        num_workers: DataLoader worker processes.
        topk: How many top samples to keep per channel.
        score: A sample's score for a channel: its spatial ``"max"`` or ``"mean"``.
        device: Where to send the inputs; by default where the model's parameters
            are. The model must be there already.
        progress: Show a progress bar (on rank 0 only), where standard error is a
            terminal; nothing is written to a log file or a pipe (see
            :mod:`fxmaps.progress`).
        train: Take the statistics of the training-mode graph (``True``) or the
            eval-mode one (``False``). By default: the mode of the graph given, and
            the eval-mode graph of a model, whatever mode the model is in.
            Training-mode statistics depend on how the data is split into batches
            (BatchNorm normalises each batch by its own statistics), so they differ
            between batch sizes and between a ``torchrun`` run and a one-process run.

    Channels are dimension 1 of each map: ``(N, C, ...)`` for convs, ``(N, C)`` for
    linears. Each batch is reduced in the maps' precision (float32 at least) where
    the maps are, with no copy of them; the running statistics are kept there in
    float64 and brought to the CPU at the end. Scores of float32 (or narrower) maps
    are float32 values. As in :func:`fxmaps.analyze` and :func:`fxmaps.extract`, the
    model runs in the mode its graph was traced in (eval by default, whatever mode the
    model is in), and nothing of the model changes: its parameters, its buffers
    (BatchNorm's running statistics included, also in training mode) and its modes
    are as they were after each batch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
        >>> data = torch.utils.data.TensorDataset(torch.randn(20, 1, 8, 8))
        >>> stats = channel_stats(net, data, layers="conv", topk=3, progress=False)
        >>> stats["0"].top_indices.shape
        torch.Size([4, 3])
    """
    _check_options(topk=topk, batch_size=batch_size, num_workers=num_workers, score=score)
    size = _length(dataset)
    world = World.join()
    graph = _graph(model_or_graph, dataset, device, train)
    run_on = torch.device(device) if device is not None else _device_of(graph.model)
    world.check_same_weights(graph.model)
    extractor = FeatureExtractor(graph, layers)
    sampler: DistributedSampler[tuple[int, torch.Tensor]] = DistributedSampler(
        _Indexed(dataset), num_replicas=world.size, rank=world.rank, shuffle=False
    )
    loader = DataLoader(
        _Indexed(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    running: Running | None = None  # every chosen node's channels, side by side
    channels: list[int] = []
    scratch = Scratch()
    seen = 0  # samples this rank has taken from its sampler, padding included
    with torch.no_grad():
        shown = progress and world.rank == 0
        for batch in progress_bar(loader, description="channel stats", unit="batch", show=shown):
            if isinstance(batch, InputError):  # made in the collate, maybe by a worker
                raise batch
            indices, inputs = batch
            # The sampler pads the end of the last shards with the first samples again:
            # positions past the dataset's end, always a tail of the batch.
            keep = _unpadded(size - world.rank - world.size * seen, world.size, len(indices))
            seen += len(indices)
            if keep == 0:
                continue
            values = _maps(extractor, graph, _cut(inputs, keep, run_on))
            if running is None:
                channels = [int(v.shape[1]) for v in values]
                running = Running(sum(channels), topk, values[0].device)
            running.update(values, indices[:keep], score, scratch)
            del values
    if running is None:  # this rank saw no sample (more ranks than samples)
        states = [Running(_channels(graph, name), topk) for name in extractor.names]
    else:
        states = running.cpu().split(channels)
    merged = {
        name: _layer_stats(world.gathered(state))
        for name, state in zip(extractor.names, states, strict=True)
    }
    return ChannelStats(merged, samples=size, topk=topk, score=score, graph=graph)


def _maps(extractor: FeatureExtractor, graph: ModelGraph, batch: Any) -> list[torch.Tensor]:
    """The chosen maps of one batch, the model in its graph's mode and left as it was."""
    with preserved_state(graph.model, train=graph.train):
        maps = extractor(**batch) if isinstance(batch, Mapping) else extractor(batch)
        return [maps[name].detach() for name in extractor.names]


class _Indexed(Dataset[tuple[int, torch.Tensor]]):
    """Items as ``(dataset index, input)``, so every sample's global index is known."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return _length(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        item = self.dataset[index]
        value = item[0] if isinstance(item, (tuple, list)) else item
        keywords = isinstance(value, Mapping) and all(
            isinstance(v, torch.Tensor) for v in value.values()
        )
        if not isinstance(value, torch.Tensor) and not keywords:
            raise InputError(
                f"dataset item {index} holds a {type(value).__name__}, not a tensor; "
                "give the dataset a transform that returns tensors (e.g. ToTensor), or "
                "dicts of tensors for a model that takes keyword arguments",
                argument="dataset",
                got=type(value).__name__,
            )
        return index, value


def _collate(batch: list[tuple[int, Any]]) -> Any:
    """``default_collate`` of ``(index, input)`` items, once their inputs are found to have
    one shape; else the ``InputError`` naming the dataset indices and shapes, returned (not
    raised) so that it reaches the caller whole from a worker process too."""
    first_index, first = batch[0]
    expected = _shapes(first)
    for index, value in batch[1:]:
        if (shapes := _shapes(value)) != expected:
            return InputError(
                f"dataset item {index} has shape {shapes}, but item {first_index} has "
                f"{expected}, and a batch needs one shape: make the dataset's transform give "
                "every sample one size (a Resize and CenterCrop), or pass batch_size=1",
                argument="dataset",
                got=str(shapes),
            )
    return default_collate(batch)


def _shapes(value: Any) -> Any:
    """An input's shape, as a tuple; a dict of tensors' shapes by key."""
    if isinstance(value, Mapping):
        return {key: _shapes(tensor) for key, tensor in value.items()}
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _layer_stats(running: Running) -> LayerStats:
    """The statistics of one layer from its (merged) running state."""
    count = torch.where(running.count > 0, running.count, torch.ones_like(running.count))
    top_scores, top_indices = running.top.result()
    return LayerStats(
        mean=running.mean,
        std=(running.m2 / count).sqrt(),
        max=running.max,
        positive=running.positive / count,
        top_indices=top_indices,
        top_scores=top_scores,
    )


def _check_options(*, topk: int, batch_size: int, num_workers: int, score: str) -> None:
    """Raise :class:`OptionError` naming the first option out of range."""
    lowest = {"topk": (topk, 1), "batch_size": (batch_size, 1), "num_workers": (num_workers, 0)}
    for option, (value, low) in lowest.items():
        if value < low:
            raise OptionError(
                f"topk={topk}, batch_size={batch_size} and num_workers={num_workers}: "
                "topk and batch_size must be at least 1, num_workers at least 0",
                option=option,
                value=value,
                valid=(f">= {low}",),
            )
    if score not in ("max", "mean"):
        raise OptionError(
            f"score={score!r}; choose 'max' or 'mean'",
            option="score",
            value=score,
            valid=("max", "mean"),
        )


def _unpadded(left: int, world: int, batch: int) -> int:
    """How many of a batch's samples are real, when its first one is ``left`` positions
    (in steps of ``world``) before the end of the dataset: ``ceil(left / world)``."""
    return max(0, min(batch, -(-left // world)))


def _channels(graph: ModelGraph, name: str) -> int:
    """Channels of a node this rank saw no sample of (more ranks than samples)."""
    shape = graph[name].out_shape
    if not (isinstance(shape, tuple) and len(shape) >= 2 and isinstance(shape[1], int)):
        raise InputError(
            f"node {name!r} has no channel dimension to take statistics of",
            argument="layers",
            node=name,
        )
    return shape[1]


def _length(dataset: Dataset[Any]) -> int:
    if not isinstance(dataset, Sized):
        raise InputError(
            f"{type(dataset).__name__} has no len(); channel_stats needs a map-style dataset",
            argument="dataset",
            got=type(dataset).__name__,
        )
    if len(dataset) == 0:
        raise InputError("the dataset is empty", argument="dataset", got="an empty dataset")
    return len(dataset)


def _graph(
    model_or_graph: nn.Module | ModelGraph, dataset: Dataset[Any], device: Any, train: bool | None
) -> ModelGraph:
    """The graph to run: the one given (in its mode), or the model's graph in ``train``'s
    mode (eval by default)."""
    if isinstance(model_or_graph, ModelGraph):
        if train is not None and train != model_or_graph.train:
            raise OptionError(
                f"train={train}, but the graph given is the "
                f"{'training' if model_or_graph.train else 'eval'}-mode graph; analyse the "
                f"model with train={train}, or leave train out to use the graph's mode",
                option="train",
                value=train,
                valid=(str(model_or_graph.train), "None"),
            )
        return model_or_graph
    model = check_module(model_or_graph, "channel_stats()", stacklevel=4)
    _, first = _Indexed(dataset)[0]
    run_on = torch.device(device) if device is not None else _device_of(model)
    sample = map_tensors(first, lambda t: t.unsqueeze(0).to(run_on))  # a batch of one
    return analyze(model, sample, train=bool(train))


def _cut(inputs: Any, keep: int, device: torch.device) -> Any:
    """The first ``keep`` samples of a batch (a tensor, or a dict of them), on ``device``."""
    return map_tensors(inputs, lambda t: t[:keep].to(device, non_blocking=True))


def _device_of(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()][:1]:
        return tensor.device
    return torch.device("cpu")
