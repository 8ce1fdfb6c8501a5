"""The processes that share a :func:`~fxmaps.stats.channel_stats` run under ``torchrun``
(or with ``torch.distributed`` initialised): joining them, checking and sharing the model's
weights, and merging each rank's running statistics with collectives (gloo on the CPU,
nccl on CUDA) in rank order, so every run merges the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from fxmaps.errors import InputError
from fxmaps.stats.running import Running, TopK, best, combine

__all__ = ["World", "share_weights"]


@dataclass(frozen=True)
class World:
    """This process's place among the processes that share the work."""

    rank: int
    size: int
    backend: str | None

    @classmethod
    def join(cls) -> World:
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
        gathered = self._all_gather(local.double(), self.device())
        if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
            raise InputError(
                "the model's weights differ between the processes, so their statistics "
                "cannot be merged; load the same weights on every rank, or call "
                "fxmaps.stats.share_weights(model) first (fxmaps stats does)",
                argument="model",
                got="weights that differ between processes",
            )

    def device(self) -> torch.device | None:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return None

    def gathered(self, running: Running) -> Running:
        """All ranks' partial statistics, combined in rank order (a collective: every rank
        calls it); alone, ``running`` itself."""
        if self.size == 1:
            return running
        import torch.distributed as dist

        device = self.device()
        channels, k = running.mean.shape[0], running.top.k
        top_scores, top_indices = running.top.result()
        # Pad each rank's top-k to k columns so every rank sends the same shape.
        pad = k - top_scores.shape[1]
        scores = torch.cat([top_scores, torch.full((channels, pad), -torch.inf)], dim=1)
        indices = torch.cat(
            [top_indices, torch.full((channels, pad), torch.iinfo(torch.int64).max)], dim=1
        )
        local = [running.count, running.mean, running.m2, running.max, running.positive, scores]
        parts = [self._all_gather(t.to(torch.float64), device) for t in local]
        index_parts = self._all_gather(indices, device)
        merged = Running(channels, k)
        for rank in range(self.size):  # in rank order, so every run merges the same way
            moments = (parts[0][rank], parts[1][rank], parts[2][rank])
            merged.count, merged.mean, merged.m2 = combine(
                (merged.count, merged.mean, merged.m2), moments
            )
            merged.max = torch.maximum(merged.max, parts[3][rank])
            merged.positive += parts[4][rank]
        all_scores = torch.cat(parts[5], dim=1)
        all_indices = torch.cat(index_parts, dim=1)
        best_scores, best_indices = best(all_scores, all_indices, k)
        real = best_indices != torch.iinfo(torch.int64).max
        keep = int(real.sum(dim=1).min())  # fewer samples than k: drop the padding
        merged.top = TopK.of(best_scores[:, :keep], best_indices[:, :keep], k)
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
    world = World.join()
    if world.size > 1:
        import torch.distributed as dist

        device = world.device()
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                shared = tensor.detach().to(device) if device is not None else tensor.detach()
                dist.broadcast(shared, src=0)
                tensor.copy_(shared)
    return world.rank
