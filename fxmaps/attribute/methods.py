"""How each method weighs a node's activations into one map, as the papers define them.

Each function takes the activations ``A`` and, for gradient methods, the gradient
``G`` of the score at the same node, both ``(N, C, H, W)``, and returns the
map ``(N, H, W)`` before the ReLU. Score-CAM's weights come from forward runs
(:mod:`.score`); its combination is :func:`weighted`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["GRADIENT_METHODS", "METHODS", "eigen", "weighted"]

Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def weighted(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_c w[n, c] A[n, c]``: the map of per-channel weights ``(N, C)``."""
    return torch.einsum("nc,nchw->nhw", weights, activations)


def gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient."""
    return weighted(activations, gradients.mean(dim=(2, 3)))


def gradcam_plus_plus(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted by the
    closed-form alphas (the exponential-score form, as pytorch-grad-cam computes it)."""
    squared, cubed = gradients**2, gradients**3
    total = activations.sum(dim=(2, 3), keepdim=True)
    alpha = squared / (2 * squared + total * cubed + 1e-6)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    weights = (gradients.clamp(min=0) * alpha).sum(dim=(2, 3))
    return weighted(activations, weights)


def xgradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): gradients weighted by the normalised activations."""
    total = activations.sum(dim=(2, 3), keepdim=True)
    weights = (gradients * activations / (total + 1e-7)).sum(dim=(2, 3))
    return weighted(activations, weights)


def layercam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): each position weighted by its positive gradient."""
    return (gradients.clamp(min=0) * activations).sum(dim=1)


def eigen(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): the projection of each position's (centred)
    channel vector on the first principal direction.

    A principal direction's sign is arbitrary; it is chosen here so that the map
    correlates positively with the channel sum of the activations.
    """
    batch, channels, height, width = activations.shape
    rows = activations.reshape(batch, channels, -1).transpose(1, 2).double()
    rows = rows - rows.mean(dim=1, keepdim=True)
    _, _, right = torch.linalg.svd(rows, full_matrices=False)
    projection = torch.einsum("npc,nc->np", rows, right[:, 0, :])
    total = activations.sum(dim=1).reshape(batch, -1).double()
    total = total - total.mean(dim=1, keepdim=True)
    sign = torch.where((projection * total).sum(dim=1) < 0, -1.0, 1.0).to(projection)
    return (projection * sign[:, None]).reshape(batch, height, width).to(activations.dtype)


GRADIENT_METHODS: dict[str, Combine] = {
    "gradcam": gradcam,
    "gradcam++": gradcam_plus_plus,
    "xgradcam": xgradcam,
    "layercam": layercam,
}
"""The methods that need the gradient at the node, by name."""

METHODS = (*GRADIENT_METHODS, "eigencam", "scorecam")
"""Every method ``fxmaps.cam`` knows, by name."""
