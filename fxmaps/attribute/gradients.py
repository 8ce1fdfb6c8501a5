"""The activations at the chosen node and the gradient of the target's score there, from
a run in which the node's value was a fresh leaf (:mod:`.run` for traced graphs,
:mod:`.captured` for captured models)."""

from __future__ import annotations

from typing import Any

import torch

from fxmaps.attribute.image import positions
from fxmaps.attribute.targets import Target, Targets, class_logits, resolve_targets, unscored
from fxmaps.errors import InputError
from fxmaps.graph import Layer

__all__ = ["Found", "checked_value", "explained"]

Found = tuple[torch.Tensor, torch.Tensor | None, Targets, torch.Tensor]
"""``(N, C, H, W)`` activations, their gradients (gradient methods), the targets and
their scores."""


def checked_value(layer: Layer, value: Any) -> torch.Tensor:
    """``value`` if it is one tensor.

    Raises:
        InputError: The node gives something else (a tuple, a dict, ``None``).
    """
    if not isinstance(value, torch.Tensor):
        raise InputError(
            f"layer={layer.name!r} gives a {type(value).__name__}, not a tensor; choose a "
            "node whose output is one tensor",
            argument="layer",
            got=layer.name,
        )
    return value


def explained(
    layer: Layer,
    leaf: torch.Tensor,
    output: Any,
    target: Target,
    image: torch.Tensor,
    *,
    scored: bool = True,
) -> Found:
    """The targets' scores on ``output`` and, where ``leaf`` requires grad, their gradient
    at ``leaf`` (the node's value, from which ``output`` was computed); both as
    positions of ``image`` (a grid, or one row ``(N, C, 1, l)`` for a signal).

    ``scored=False`` (Eigen-CAM, which uses no target): with ``target=None`` and an
    output that has no class scores (a detector's boxes), no class and NaN scores.
    """
    gradient, dims = leaf.requires_grad, image.dim() - 2
    with torch.set_grad_enabled(gradient):
        if not scored and target is None and class_logits(output) is None:
            targets = unscored(image.shape[0])
        else:
            targets = resolve_targets(target, output, image.shape[0])
        rows = torch.tensor([c or 0 for c in targets.classes], device=leaf.device)
        scores = targets.score(output, rows)
        grads = torch.autograd.grad(scores.sum(), leaf)[0] if gradient else None
    activations = positions(layer, leaf.detach(), dims)
    return activations, None if grads is None else positions(layer, grads, dims), targets, scores
