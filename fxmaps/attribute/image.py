"""What a class activation map is drawn on, and at which positions: the image (or signal)
among a model's inputs, a node's value as positions, and the masked runs of Score-CAM.

Images are ``(N, C, H, W)``; signals (audio, sequences) ``(N, C, L)``. A 1-d map is
computed as a grid of one row: the signal as ``(N, C, 1, L)``, the node's value as
``(N, C, 1, l)``. Bilinear interpolation of one row is linear interpolation, and every
method's sums and means over positions are the same, so one code path serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx

from fxmaps.errors import InputError
from fxmaps.extract.transforms import to_spatial
from fxmaps.facts import Layout
from fxmaps.graph import Layer
from fxmaps.trace.inputs import Inputs, map_tensors

__all__ = [
    "MaskedRun",
    "as_rows",
    "check_maskable",
    "find_image",
    "masked_inputs",
    "masked_runner",
    "positions",
]

MaskedRun = Callable[[torch.Tensor, torch.Tensor], Any]
"""``run(masked, samples)``: the model's output on masked images ``(k, C, H, W)`` (a 1-d
signal as ``(k, C, 1, L)``), where row ``i`` was masked from sample ``samples[i]``."""


def find_image(given: Inputs) -> torch.Tensor:
    """The tensor the maps are drawn on: the first ``(N, C, H, W)`` one; else a list of
    ``(C, H, W)`` images of one size (as detection models take them), stacked; else the
    first ``(N, C, L)`` one.

    Raises:
        InputError: No input tensor has either form, or a list's images differ in size.
    """
    tensors = given.tensors()
    found = next((t for t in tensors if t.dim() == 4), None)
    if found is None:
        found = _listed_images(given)
    if found is None:
        found = next((t for t in tensors if t.dim() == 3), None)
    if found is not None:
        return found
    shapes = [tuple(t.shape) for t in tensors]
    raise InputError(
        f"cam() draws maps on an image batch (N, C, H, W), a list of images (C, H, W) or a "
        f"signal batch (N, C, L), and the inputs hold {shapes}; pass images or signals "
        "with a batch dimension",
        argument="inputs",
        got=str(shapes),
    )


def _listed_images(given: Inputs) -> torch.Tensor | None:
    """The images of the first argument that is a list of ``(C, H, W)`` tensors, as a batch."""
    for value in (*given.args, *given.kwargs.values()):
        if not isinstance(value, list | tuple) or not value:
            continue
        if not all(isinstance(v, torch.Tensor) and v.dim() == 3 for v in value):
            continue
        shapes = {tuple(v.shape) for v in value}
        if len(shapes) > 1:
            raise InputError(
                f"cam() draws maps on a list of images of one size, and these differ: "
                f"{sorted(shapes)}; resize them to one size first",
                argument="inputs",
                got=str(sorted(shapes)),
            )
        return torch.stack(list(value))
    return None


def as_rows(image: torch.Tensor) -> torch.Tensor:
    """An image as it is; a signal ``(N, C, L)`` as a grid of one row ``(N, C, 1, L)``."""
    return image[:, :, None] if image.dim() == 3 else image


def positions(layer: Layer, tensor: torch.Tensor, dims: int) -> torch.Tensor:
    """``layer``'s value as ``(N, C, h, w)``: a grid for images (``dims=2``), one row
    ``(N, C, 1, l)`` for signals (``dims=1``).

    Raises:
        InputError: The value has no grid larger than 1x1 (no length above 1).
    """
    if dims == 1:
        sequence = tensor
        if layer.layout is Layout.CHANNELS_LAST and tensor.dim() == 3:
            sequence = tensor.transpose(1, 2)  # tokens (N, l, C) as (N, C, l)
        if sequence.dim() == 3 and sequence.shape[2] > 1:
            return sequence[:, :, None]
        raise InputError(
            f"layer={layer.name!r} gives {tuple(tensor.shape)} for these inputs: no sequence "
            "longer than 1 for a 1-d map; give longer signals or choose an earlier node",
            argument="layer",
            got=layer.name,
        )
    grid, _ = to_spatial(tensor, layer.layout)
    if grid.dim() != 4 or grid.shape[2] * grid.shape[3] <= 1:
        raise InputError(
            f"layer={layer.name!r} gives {tuple(tensor.shape)} for these inputs: no spatial "
            "grid larger than 1x1; give larger images or choose an earlier node",
            argument="layer",
            got=layer.name,
        )
    return grid


def masked_runner(
    module: fx.GraphModule, tensors: Sequence[torch.Tensor], image: torch.Tensor
) -> MaskedRun:
    """Score-CAM's runs of a traced graph (``module``, on its flat tensor arguments
    ``tensors``): the masked image in the image's place, every other input with its
    masked sample (see :func:`masked_inputs`).

    Raises:
        InputError: The image is not one of the graph's tensor arguments (it sits inside
            a list or a dict, where it cannot be replaced).
    """
    check_maskable(tensors, image)
    given = Inputs(tuple(tensors), {})

    def run(masked: torch.Tensor, samples: torch.Tensor) -> Any:
        return masked_inputs(given, image, masked, samples).call(module)

    return run


def check_maskable(tensors: Sequence[torch.Tensor], image: torch.Tensor) -> None:
    """Refuse Score-CAM where the image is not one tensor argument that a masked batch
    can replace (a list of images, an image inside a dict).

    Raises:
        InputError: ``image`` is not one of ``tensors``.
    """
    if not any(t is image for t in tensors):
        raise InputError(
            f"method='scorecam' masks the image batch {tuple(image.shape)}, and the model does "
            "not take it as one tensor (its images sit in a list or a dict); use a gradient "
            "method or eigencam, or pass the batch as an argument of its own",
            argument="method",
            got="scorecam",
        )


def masked_inputs(
    given: Inputs, image: torch.Tensor, masked: torch.Tensor, samples: torch.Tensor
) -> Inputs:
    """``given`` for a batch of masked images: ``masked`` (a signal as ``(k, C, 1, L)``) in
    ``image``'s place, and each other tensor whose first dimension is the batch size
    indexed by ``samples`` (the sample each masked row came from); the rest as given."""
    batch, signal = image.shape[0], image.dim() == 3

    def swap(tensor: torch.Tensor) -> torch.Tensor:
        if tensor is image:
            return masked[:, :, 0] if signal else masked
        if tensor.dim() and tensor.shape[0] == batch:
            return tensor[samples.to(tensor.device)]
        return tensor

    return Inputs(map_tensors(given.args, swap), map_tensors(dict(given.kwargs), swap))
