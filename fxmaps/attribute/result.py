"""``CamResult``: the maps of one ``fxmaps.cam`` call and what they explain."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CamResult"]


@dataclass(frozen=True)
class CamResult:
    """Class activation maps for a batch.

    Attributes:
        maps: ``(N, H, W)`` float maps at the input's height and width, each scaled to
            [0, 1] on its own (min-max; an all-zero map stays zero). For signals
            ``(N, C, L)``: ``(N, L)``, interpolated linearly.
        raw: ``(N, h, w)`` at the layer's resolution (``(N, l)`` for signals): the
            weighted activations after the ReLU, before scaling.
        layer: The node the maps were taken at (chosen by fxmaps when not given).
        targets: The class explained for each sample; ``None`` where a callable target
            gave the score.
        scores: ``(N,)`` each sample's score of its target (the class's logit).
        method: The method's name (``"gradcam"``, ``"scorecam"``, ...).
    """

    maps: torch.Tensor
    raw: torch.Tensor
    layer: str
    targets: tuple[int | None, ...]
    scores: torch.Tensor
    method: str

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def __repr__(self) -> str:
        size = "x".join(str(d) for d in self.maps.shape[1:])
        return (
            f"CamResult(method={self.method!r}, layer={self.layer!r}, "
            f"samples={len(self)}, size={size}, targets={list(self.targets)})"
        )
