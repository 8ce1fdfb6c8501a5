"""Score-CAM's channel weights (Wang et al. 2020), from batched forward runs.

Each channel of the node's activations, upsampled to the input's size and scaled to
[0, 1], masks the input; the model's score of the target on that masked input,
softmaxed over the channels, is the channel's weight. The masks multiply the input,
so every masked run goes through the whole graph: no part of it can be skipped, and the
work is that of pytorch-grad-cam's Score-CAM. What is saved: the runs are batched
across channels and samples in channels-last memory (no hooks, no autograd), and
every channel whose activation is constant gives the same all-zero input, so that
input is run once per sample (one batch).

``run(masked, samples)`` is given which sample each masked row comes from, so that a
model's other inputs can go with it (:func:`fxmaps.attribute.image.masked_runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from fxmaps.attribute.targets import Targets
from fxmaps.errors import InputError

__all__ = ["score_weights"]


def masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` each channel upsampled (bilinear, corners aligned) and scaled to [0, 1]."""
    up = F.interpolate(activations, size=size, mode="bilinear", align_corners=True)
    flat = up.flatten(2)
    low, high = flat.min(dim=2).values, flat.max(dim=2).values
    return (up - low[..., None, None]) / (high - low + 1e-8)[..., None, None]


def score_weights(
    run: Callable[[torch.Tensor, torch.Tensor], Any],
    image: torch.Tensor,
    activations: torch.Tensor,
    targets: Targets,
    batch_size: int,
) -> torch.Tensor:
    """``(N, C)`` softmaxed scores of the target on the input masked by each channel.

    ``run(masked, samples)`` returns the model's output on masked inputs, row ``i``
    masked from sample ``samples[i]``.
    """
    count, channels = activations.shape[:2]
    scaled = masks(activations.float(), (int(image.shape[-2]), int(image.shape[-1])))
    flat = activations.flatten(2)
    constant = flat.amax(dim=2) == flat.amin(dim=2)  # their masks are all zero
    scores = torch.empty(count, channels, device=image.device)
    classes = _classes(targets, image.device)
    if bool(constant.any()):
        scores[constant] = _zero_scores(run, image, targets, classes, constant)
    sample, channel = (~constant).nonzero(as_tuple=True)
    for start in range(0, len(sample), batch_size):
        n, c = sample[start : start + batch_size], channel[start : start + batch_size]
        masked = image[n] * scaled[n, c][:, None].to(image.dtype)
        masked = masked.contiguous(memory_format=torch.channels_last)  # oneDNN's own layout
        rows = classes[n] if classes is not None else n
        scores[n, c] = _per_row(targets.score(run(masked, n), rows), len(n))
    return torch.softmax(scores, dim=1)


def _per_row(found: torch.Tensor, rows: int) -> torch.Tensor:
    """``found`` if it holds one score per masked row.

    Raises:
        InputError: A target callable that scores the samples it was first shown, not
            each row of the batch it is given.
    """
    if found.numel() != rows:
        raise InputError(
            f"the target callable gave {found.numel()} scores for a batch of {rows} masked "
            "inputs; Score-CAM calls it on batches of masked inputs, so it must score each "
            "row of the output on its own (out[:, 3], not out[[0, 1], [3, 5]])",
            argument="target",
            got=f"{found.numel()} scores",
        )
    return found.float()


def _classes(targets: Targets, device: torch.device) -> torch.Tensor | None:
    if any(c is None for c in targets.classes):
        return None
    return torch.tensor(targets.classes, dtype=torch.long, device=device)


def _zero_scores(
    run: Callable[[torch.Tensor, torch.Tensor], Any],
    image: torch.Tensor,
    targets: Targets,
    classes: torch.Tensor | None,
    constant: torch.Tensor,
) -> torch.Tensor:
    """The scores of the constant channels: their masks are all zero, so each is its
    sample's score on the all-zero input (run once per sample that has one, in one batch)."""
    samples = constant.any(dim=1).nonzero()[:, 0]
    rows = classes[samples] if classes is not None else samples
    zero = targets.score(run(torch.zeros_like(image[samples]), samples), rows).float()
    order = torch.zeros(constant.shape[0], dtype=torch.long, device=zero.device)
    order[samples] = torch.arange(len(samples), device=zero.device)
    return zero[order[constant.nonzero()[:, 0]]]
