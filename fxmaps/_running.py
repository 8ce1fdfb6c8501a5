"""Running per-channel statistics of a stream of maps: moments, maxima, positive
counts and a top-k of per-sample scores, updated one batch at a time.

Each update makes a few vectorised passes over a batch's maps in their own precision
and on their device, and combines only the ``(N, C)`` results in float64 (Chan's
parallel update). The top-k keeps float32 scores as unique int64 keys, so one
``topk`` merges a batch exactly, ties going to the lower dataset index.
"""

from __future__ import annotations

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

    def update(
        self, maps: torch.Tensor, indices: torch.Tensor, score: Score, scratch: Scratch
    ) -> None:
        """Add a batch of maps; ``indices`` (their dataset indices, on the CPU) must
        increase and be above every index added before, as an unshuffled sampler gives."""
        values = maps.flatten(2) if maps.dim() > 2 else maps.unsqueeze(-1)  # (N, C, positions)
        if not values.is_floating_point() or values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()
        # Four vectorised passes over each map, in its own precision and on its device; only
        # the (N, C) results are combined in float64. This runs once per batch and node, so
        # it must cost little next to the forward pass.
        samples, _, positions = values.shape
        ones = torch.ones(positions, dtype=values.dtype, device=values.device)
        sums = values @ ones  # (N, C); a matrix-vector product is the fastest sum for any size
        peaks = values.amax(dim=2)
        norms = torch.linalg.vector_norm(values, dim=2)  # square roots of the sums of squares
        positive = torch.gt(values, 0, out=scratch.like(values)) @ ones  # exact counts
        # One conversion to float64 and one sum over the samples for three of them.
        reduced = torch.stack([sums, norms, positive, peaks]).double()  # (4, N, C)
        reduced[1].square_()
        totals = reduced[:3].sum(dim=1)  # (3, C)
        batch_mean = totals[0] / (samples * positions)
        m2 = totals[1] - samples * positions * batch_mean.square()
        # The sums of squares are accurate to the maps' precision (float32 at worst), so
        # M2 is, times sum(x²) / M2; where that ratio is high (|mean| > ~4 std), the
        # channel's values are centred and summed again.
        unsure = torch.nonzero(totals[1] > _TRUSTED_RATIO * m2).flatten()
        if len(unsure):
            m2[unsure] = _m2(values.index_select(1, unsure), sums[:, unsure], batch_mean[unsure])
        count = torch.full_like(batch_mean, float(samples * positions))
        self.count, self.mean, self.m2 = combine(
            (self.count, self.mean, self.m2), (count, batch_mean, m2)
        )
        self.max = torch.maximum(self.max, reduced[3].amax(dim=0))
        self.positive += totals[2]
        # Float32 scores for maps of float32 or less: TopK ranks those fastest.
        self.top.add((peaks if score == "max" else sums / positions).T, indices)

    def cpu(self) -> Running:
        """This state on the CPU."""
        moved = Running(0, self.top.k)
        for name in ("count", "mean", "m2", "positive", "max"):
            setattr(moved, name, getattr(self, name).cpu())
        scores, indices = self.top.result()
        moved.top = TopK.of(scores.cpu(), indices.cpu(), self.top.k)
        return moved


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
