"""Maps over the photo they came from: the blending that :func:`~fxmaps.plot_top_images` and
``plot_feature_maps(..., overlay=True)`` share, and the input image made ready to show.

A map is upsampled (bilinear) to the photo's display size, scaled to ``[0, 1]``, coloured
by a colormap and blended over the photo: ``(1 - alpha) * photo + alpha * colour``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from fxmaps.errors import InputError
from fxmaps.render.canvas import Array, MapLike

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = ["ALPHA", "blend", "display_size", "heat", "photo"]

ALPHA = 0.45
"""Weight of the heat map over the photo."""


def photo(
    image: MapLike, *, sample: int = 0, size: tuple[int, int] | None = None, smooth: bool = False
) -> Array:
    """An input image as ``(H, W, 3)`` floats in ``[0, 1]`` (min-max scaled), resized to ``size``
    (nearest pixels, or bilinear and antialiased when ``smooth``).

    Takes ``(N, C, H, W)`` (item ``sample``), ``(C, H, W)`` with 1 or 3 channels (a
    4th, alpha, is dropped), ``(H, W, 3)`` arrays and ``(H, W)`` grey images.
    """
    tensor = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
    if tensor.dim() == 4:
        tensor = tensor[sample]
    if tensor.dim() == 3 and tensor.shape[0] not in (1, 3, 4) and tensor.shape[-1] in (1, 3, 4):
        tensor = tensor.permute(2, 0, 1)  # (H, W, C) as an array holds a photo
    if tensor.dim() == 2:
        tensor = tensor[None]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4) or 0 in tensor.shape:
        raise InputError(
            f"cannot show an input image shaped {tuple(image.shape)}; pass (N, 3, H, W), "
            "(3, H, W), (H, W, 3) or (H, W), such as fxmaps.load_image(normalize=False)",
            argument="image",
            got=f"an image shaped {tuple(image.shape)}",
        )
    tensor = tensor[:3]
    if size is not None and tuple(tensor.shape[1:]) != size:
        how = {"mode": "bilinear", "antialias": True} if smooth else {"mode": "nearest"}
        tensor = F.interpolate(tensor[None], size=size, **how)[0]
    low, high = tensor.min(), tensor.max()
    scaled = ((tensor - low) / (high - low).clamp_min(1e-12)).permute(1, 2, 0).numpy()
    return np.repeat(scaled, 3, axis=-1) if scaled.shape[-1] == 1 else scaled


def display_size(height: int, width: int, side: int) -> tuple[int, int]:
    """``(height, width)`` scaled so that the longer side is ``side`` pixels."""
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def heat(maps: torch.Tensor, size: tuple[int, int], *, shared: bool = False) -> Array:
    """``(N, C, H, W)`` maps upsampled to ``size`` (bilinear) and scaled to ``[0, 1]``: per
    sample and channel, or by one range for all when ``shared``. NaN stays NaN."""
    maps = maps.detach().to(device="cpu", dtype=torch.float32)
    bad = ~torch.isfinite(maps)
    resized = F.interpolate(
        torch.where(bad, 0.0, maps), size=size, mode="bilinear", align_corners=False
    )
    dims = (0, 1, 2, 3) if shared else (2, 3)
    low = resized.amin(dim=dims, keepdim=True)
    high = resized.amax(dim=dims, keepdim=True)
    scaled = (resized - low) / (high - low).clamp_min(1e-12)
    if bad.any():
        hole = F.interpolate(bad.float(), size=size, mode="nearest") > 0
        scaled = torch.where(hole, torch.nan, scaled)
    result: Array = scaled.numpy()
    return result


def blend(
    picture: npt.NDArray[np.float32], values: Array, colormap: Colormap, alpha: float = ALPHA
) -> Array:
    """``picture`` ``(..., 3)`` with ``values`` (same leading shape, in [0, 1]) coloured over it."""
    colours = colormap(values)[..., :3]
    blended: Array = ((1 - alpha) * picture + alpha * colours).astype(np.float32)
    return blended
