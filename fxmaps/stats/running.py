"""Running per-channel statistics of a stream of maps: moments, maxima, positive
counts and a top-k of per-sample scores, updated one batch at a time.

Each update makes a few vectorised passes over a batch's maps in their own precision
and on their device, and combines only the ``(N, C)`` results in float64 (Chan's
parallel update). The top-k keeps float32 scores as unique int64 keys, so one
``topk`` merges a batch exactly, ties going to the lower dataset index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["Running", "Score", "Scratch", "TopK", "best", "combine"]

Score = Literal["max", "mean"]


class Running:
    """One node's running per-channel moments, maxima and top-k, in float64.

    The state lives where the maps are (no copy to the host per batch);
    :meth:`cpu` brings it to the CPU for the merge.
    """

    def __init__(self, channels: int, k: int, device: torch.device | None = None) -> None:
        def zeros() -> torch.Tensor:
            return torch.zeros(channels, dtype=torch.float64, device=device)

        self.count, self.mean, self.m2, self.positive = zeros(), zeros(), zeros(), zeros()
        self.max = torch.full((channels,), -torch.inf, dtype=torch.float64, device=device)
        self.top = TopK(channels, k, device)
        self._positions: torch.Tensor | None = None  # per channel, positions per sample

    def update(
        self,
        maps: Sequence[torch.Tensor],
        indices: torch.Tensor,
        score: Score,
        scratch: Scratch,
    ) -> None:
        """Add a batch of the maps of one node or several, their channels side by side in
        this state, in the same order every time; ``indices`` (their dataset indices, on
        the CPU) must increase and be above every index added before, as an unshuffled
        sampler gives."""
        flat = [_flat(m) for m in maps]
        # Four vectorised passes over each map, in its own precision and on its device;
        # then the (N, C) results of all nodes are combined together in float64, with as
        # few small ops as one node would need. This runs once per batch, so it must cost
        # little next to the forward pass.
        device = flat[0].device  # of the first map, where this state lives
        parts = [_reduce(values, scratch).to(device) for values in flat]
        reduced_in = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)  # (4, N, C)
        if self._positions is None:
            self._positions = torch.cat(
                [torch.full((v.shape[1],), float(v.shape[2]), device=device) for v in flat]
            ).double()
        positions = self._positions
        samples = flat[0].shape[0]
        sums, peaks = reduced_in[0], reduced_in[3]
        reduced = reduced_in.double()  # one conversion to float64 for all of them
        reduced[1].square_()
        totals = reduced[:3].sum(dim=1)  # (3, C)
        count = samples * positions
        batch_mean = totals[0] / count
        m2 = totals[1] - count * batch_mean.square()
        # The sums of squares are accurate to the maps' precision (float32 at worst), so
        # M2 is, times sum(x²) / M2; where that ratio is high (|mean| > ~4 std), the
        # channel's values are centred and summed again.
        unsure = torch.nonzero(totals[1] > _TRUSTED_RATIO * m2).flatten()
        if len(unsure):
            _recentre(m2, unsure, flat, sums, batch_mean)
        self.count, self.mean, self.m2 = combine(
            (self.count, self.mean, self.m2), (count, batch_mean, m2)
        )
        self.max = torch.maximum(self.max, reduced[3].amax(dim=0))
        self.positive += totals[2]
        # Float32 scores for maps of float32 or less: TopK ranks those fastest.
        scores = peaks if score == "max" else sums / positions.to(sums.dtype)
        self.top.add(scores.T, indices)

    def split(self, channels: Sequence[int]) -> list[Running]:
        """The states of the nodes whose channels (so many each) lie side by side here."""
        scores, indices = self.top.result()
        states = []
        start = 0
        for size in channels:
            rows = slice(start, start + size)
            state = Running(0, self.top.k)
            for name in ("count", "mean", "m2", "positive", "max"):
                setattr(state, name, getattr(self, name)[rows])
            state.top = TopK.of(scores[rows], indices[rows], self.top.k)
            states.append(state)
            start += size
        return states

    def cpu(self) -> Running:
        """This state on the CPU."""
        moved = Running(0, self.top.k)
        for name in ("count", "mean", "m2", "positive", "max"):
            setattr(moved, name, getattr(self, name).cpu())
        scores, indices = self.top.result()
        moved.top = TopK.of(scores.cpu(), indices.cpu(), self.top.k)
        return moved


def _flat(maps: torch.Tensor) -> torch.Tensor:
    """``(N, C, positions)`` values of ``(N, C, ...)`` maps, float32 at least."""
    values = maps.flatten(2) if maps.dim() > 2 else maps.unsqueeze(-1)
    if not values.is_floating_point() or values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()
    return values


def _recentre(
    m2: torch.Tensor,
    unsure: torch.Tensor,
    flat: Sequence[torch.Tensor],
    sums: torch.Tensor,
    mean: torch.Tensor,
) -> None:
    """Set ``m2`` of the ``unsure`` channels (of all maps, side by side) from their
    values centred on their means."""
    start = 0
    for values in flat:
        end = start + values.shape[1]
        mine = unsure[(unsure >= start) & (unsure < end)]
        if len(mine):
            local = (mine - start).to(values.device)
            centred = _m2(
                values.index_select(1, local),
                sums[:, mine].to(values.device),
                mean[mine].to(values.device),
            )
            m2[mine] = centred.to(m2.device)
        start = end


def _reduce(values: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """``(4, N, C)``: per sample and channel of ``(N, C, P)`` values, their sum, the square
    root of their sum of squares, how many are above zero, and their maximum.

    A few samples at a time, as many as fill :data:`_CHUNK_BYTES`: the first pass over
    them brings them into the cache, and the other three read them from there.
    """
    samples, channels, positions = values.shape
    out = torch.empty(4, samples, channels, dtype=values.dtype, device=values.device)
    ones = torch.ones(positions, dtype=values.dtype, device=values.device)
    per_sample = channels * positions * values.element_size()
    step = samples if values.device.type != "cpu" else max(1, _CHUNK_BYTES // per_sample)
    for start in range(0, samples, step):
        part = values[start : start + step]
        rows = slice(start, start + part.shape[0])
        torch.matmul(part, ones, out=out[0, rows])  # the fastest sum, for any size
        torch.linalg.vector_norm(part, dim=2, out=out[1, rows])
        torch.matmul(torch.gt(part, 0, out=scratch.like(part)), ones, out=out[2, rows])
        torch.amax(part, dim=2, out=out[3, rows])
    return out


_CHUNK_BYTES = 1 << 20
"""Bytes of maps reduced at a time on the CPU: well inside a core's L2 cache."""


class TopK:
    """Per channel, the ``k`` best (score, dataset index) pairs so far, best first; of
    two equal scores the lower index ranks first (``-0.0`` equals ``0.0``, NaN is best).

    Float32 scores are kept as int64 keys that order as those pairs do (the score's
    bits made order-preserving above, ``2**32 - 1 - index`` below): the keys are
    unique, so one ``topk`` merges a batch, exactly and deterministically, at a
    third of the cost of a sort. Float64 scores (of float64 maps) are merged by a
    stable sort instead.
    """

    def __init__(self, channels: int, k: int, device: torch.device | None = None) -> None:
        self.k = k
        self.keys: torch.Tensor | None = torch.empty(channels, 0, dtype=torch.int64, device=device)
        self.scores = torch.empty(channels, 0, dtype=torch.float64, device=device)
        self.indices = torch.empty(channels, 0, dtype=torch.int64, device=device)

    @classmethod
    def of(cls, scores: torch.Tensor, indices: torch.Tensor, k: int) -> TopK:
        """Ranked ``(C, <=k)`` float64 scores and their indices, as a top-k."""
        top = cls(0, k)
        top.keys, top.scores, top.indices = None, scores, indices
        return top

    def add(self, scores: torch.Tensor, indices: torch.Tensor) -> None:
        """Merge a batch's ``(C, N)`` scores; its ``(N,)`` indices (on the CPU) increase
        and are above every index added before."""
        if self.keys is not None and scores.dtype == torch.float32 and int(indices[-1]) < 2**32:
            batch = _keys(scores, indices.to(scores.device))
            merged = torch.cat([self.keys, batch], dim=1)
            self.keys = merged.topk(min(self.k, merged.shape[1]), dim=1).values
            return
        kept_scores, kept_indices = self.result()
        self.keys = None
        # The kept pairs are ranked and their indices are below the batch's, which
        # increase: in the kept columns followed by the batch's, the earlier of two
        # equal scores has the lower index, so a stable sort breaks ties right.
        merged = torch.cat([kept_scores, scores.double()], dim=1)
        batch_indices = indices.to(scores.device).expand(scores.shape[0], -1)
        all_indices = torch.cat([kept_indices, batch_indices], dim=1)
        order = torch.argsort(merged, dim=1, descending=True, stable=True)[:, : self.k]
        self.scores, self.indices = merged.gather(1, order), all_indices.gather(1, order)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C, <=k)`` float64 scores and int64 indices, best first."""
        if self.keys is None:
            return self.scores, self.indices
        ordered = torch.div(self.keys, 2**32, rounding_mode="floor")
        indices = 2**32 - 1 - (self.keys - ordered * 2**32)
        magnitude = ordered.abs()
        bits = torch.where(ordered < 0, magnitude - 2**31, magnitude).to(torch.int32)
        return bits.view(torch.float32).double(), indices


def _keys(scores: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """int64 keys of float32 ``(C, N)`` scores and ``(N,)`` indices below ``2**32`` that
    order as (score, -index) pairs do; see :class:`TopK`."""
    bits = scores.view(torch.int32).to(torch.int64)
    # Read as int32, the bits of the negative numbers, 0x80000000 (-0.0) to 0xFF800000
    # (-inf), are those up to -0x800000; above them lie the negative NaNs. A negative
    # number's key is minus its magnitude: (m ^ -1) + 1, two's complement, without a branch.
    negative = (bits + 0x7FFFFF) >> 63  # -1 for negative numbers, else 0
    keys = ((bits & 0x7FFFFFFF) ^ negative) - negative
    return keys.mul_(2**32).add_(2**32 - 1 - indices.to(torch.int64))


class Scratch:
    """One reusable buffer for the per-batch temporaries, as large as the largest map."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def like(self, values: torch.Tensor) -> torch.Tensor:
        """A contiguous tensor of ``values``'s shape, dtype and device (contents undefined)."""
        size = values.numel()
        buffer = self._buffer
        if (
            buffer is None
            or buffer.numel() < size
            or buffer.dtype != values.dtype
            or (buffer.device != values.device)
        ):
            buffer = self._buffer = torch.empty(size, dtype=values.dtype, device=values.device)
        return buffer[:size].view(values.shape)


_TRUSTED_RATIO = 16.0
"""Sums of squares up to this many times M2 give M2 to about 3e-7; above, two passes."""


def _m2(values: torch.Tensor, sums: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Per channel, the sum of squared deviations from ``mean`` of ``(N, C, P)`` values
    whose ``(N, C)`` sums are ``sums``: each sample centred on its own mean, then merged."""
    positions = values.shape[2]
    sample_mean = sums / positions
    spreads: torch.Tensor = torch.linalg.vector_norm(
        values - sample_mean.unsqueeze(2), dim=2
    ).double()
    # Equal counts per sample, so Chan's merge of the samples is a plain sum.
    spread = (sample_mean.double() - mean).square().sum(dim=0)
    return spreads.square().sum(dim=0) + spread * positions


def combine(
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


def best(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k highest scores, ties broken by the lower index."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    scores, indices = scores.gather(1, by_index), indices.gather(1, by_index)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), indices.gather(1, order)
