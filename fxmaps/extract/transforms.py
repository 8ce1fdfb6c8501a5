"""What happens to each map as it is produced: spatial tokens, channels, reduction, dtype, device.

These run inside the extraction graph, right after the node that produced the
map, so the full-size map is released as soon as the model no longer needs it.
A map that a later in-place op would overwrite is copied here, and only then,
and only when the transforms did not already produce a fresh tensor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fxmaps.classify import Layout
from fxmaps.errors import DeviceError, OptionError

__all__ = ["MapOptions", "MapTransform", "map_options"]

_REDUCERS = ("mean", "max", "norm")
_OVER = ("channels", "space")
_TOP = re.compile(r"top:(\d+)")
_MAX_EXTRA_TOKENS = 8


@dataclass(frozen=True)
class MapOptions:
    """Validated per-map controls; hashable, so extractors can be cached by them."""

    channels: tuple[Any, ...] | None = None  # ("indices", ...), ("slice", a, b, c), ("top", k)
    reduce: tuple[str, str] | None = None  # (reducer, over)
    dtype: torch.dtype | None = None
    device: str | None = None
    spatial: bool = False

    @property
    def identity(self) -> bool:
        return self == MapOptions()


def map_options(
    *,
    channels: Any = None,
    reduce: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    spatial: bool = False,
) -> MapOptions:
    """Check the per-map controls of ``extract`` and put them in a hashable form.

    Raises:
        OptionError: A value outside what the option accepts; the message lists those.
        DeviceError: ``device`` is CUDA where there is none.
    """
    return MapOptions(
        channels=_channels_spec(channels),
        reduce=_reduce_spec(reduce),
        dtype=_dtype(dtype),
        device=_device(device),
        spatial=bool(spatial),
    )


def _device(device: torch.device | str | None) -> str | None:
    if device is None:
        return None
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise OptionError(
            f"device={device!r} is not a device; use for example 'cpu', 'cuda' or 'cuda:1'",
            option="device",
            value=device,
            valid=("cpu", "cuda", "cuda:<index>"),
        ) from err
    if target.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device={device!r}: there is no CUDA device here; use device='cpu'",
            expected="cpu",
            got=str(target),
        )
    return str(target)


def _channels_spec(channels: Any) -> tuple[Any, ...] | None:
    if channels is None:
        return None
    if isinstance(channels, slice):
        return ("slice", channels.start, channels.stop, channels.step)
    if isinstance(channels, str):
        match = _TOP.fullmatch(channels)
        if match and int(match.group(1)) > 0:
            return ("top", int(match.group(1)))
    elif isinstance(channels, int) and not isinstance(channels, bool):
        return ("indices", channels)
    elif isinstance(channels, (list, tuple, range, torch.Tensor)):
        values = [
            int(c) for c in (channels.tolist() if isinstance(channels, torch.Tensor) else channels)
        ]
        if values:
            return ("indices", *values)
    raise OptionError(
        f"channels={channels!r} is not valid; pass channel indices ([0, 5, 7]), a slice "
        "(slice(0, 16)), or 'top:k' for the k channels with the largest mean activation",
        option="channels",
        value=channels,
        valid=("channel indices", "a slice", "'top:k'"),
    )


def _reduce_spec(reduce: str | None) -> tuple[str, str] | None:
    if reduce is None:
        return None
    reducer, _, over = str(reduce).partition(":")
    over = over or "channels"
    if reducer not in _REDUCERS or over not in _OVER:
        forms = ", ".join(f"'{r}'" for r in _REDUCERS)
        raise OptionError(
            f"reduce={reduce!r} is not valid; use {forms} (over channels) or 'mean:space', "
            "'max:space', 'norm:space' (over the spatial or token axes)",
            option="reduce",
            value=reduce,
            valid=(*_REDUCERS, *(f"{r}:space" for r in _REDUCERS)),
        )
    return reducer, over


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""What a map may be converted to: maps are floats (an integer dtype would truncate them)."""


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None:
        return None
    value = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise OptionError(
            f"dtype={dtype!r} is not a torch dtype; for example torch.float16 or 'float16'",
            option="dtype",
            value=dtype,
        )
    if value not in _FLOATS:
        allowed = ", ".join(str(f) for f in _FLOATS)
        raise OptionError(
            f"dtype={dtype!r} is not a floating-point dtype: maps are floats, which "
            f"{value} would not keep (an integer dtype truncates them); use one of "
            f"{allowed} (torch.float16 halves the memory)",
            option="dtype",
            value=dtype,
            valid=tuple(str(f) for f in _FLOATS),
        )
    return value


class MapTransform(nn.Module):
    """Applies the map controls to one node's output; returns ``(map, kept channels)``."""

    def __init__(self, options: MapOptions, layout: Layout, snapshot: bool) -> None:
        super().__init__()
        self.options = options
        self.layout = layout
        self.snapshot = snapshot

    def forward(self, value: Any) -> tuple[Any, Any]:
        """The map and the kept channel indices; for a tuple, list or dict of tensors (an
        LSTM's ``(output, (h, c))``), a tuple or dict of each, element by element."""
        if isinstance(value, torch.Tensor):
            return self._one(value)
        if isinstance(value, (tuple, list)):
            pairs = [self.forward(item) for item in value]
            return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        if isinstance(value, dict):
            found = {key: self.forward(item) for key, item in value.items()}
            return {k: p[0] for k, p in found.items()}, {k: p[1] for k, p in found.items()}
        return value, None

    def _one(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tensor, layout = value, self.layout
        if self.options.spatial:
            tensor, layout = to_spatial(tensor, layout)
        axis = -1 if layout is Layout.CHANNELS_LAST else 1
        kept = None
        if self.options.channels is not None and tensor.dim() >= 2:
            tensor, kept = _select(tensor, axis, self.options.channels)
        if self.options.reduce is not None and tensor.dim() >= 2:
            tensor = _reduce(tensor, axis, *self.options.reduce)
        if self.options.dtype is not None or self.options.device is not None:
            tensor = tensor.to(device=self.options.device, dtype=self.options.dtype)
        if self.snapshot and _shares_storage(tensor, value):
            tensor = tensor.clone()
        return tensor, kept


def to_spatial(tensor: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
    """Channels-last tokens or grids as ``(N, C, H, W)``; other maps unchanged.

    ``(N, L, C)`` tokens lose their leading class/register tokens: the smallest
    count ``extra`` (at most 8) for which ``L - extra`` is a square.
    """
    if layout is not Layout.CHANNELS_LAST:
        return tensor, layout
    if tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2), Layout.CHANNELS_FIRST
    if tensor.dim() != 3:
        return tensor, layout
    batch, tokens, width = tensor.shape
    for extra in range(min(_MAX_EXTRA_TOKENS, tokens - 1) + 1):
        side = math.isqrt(tokens - extra)
        if side * side == tokens - extra:
            grid = tensor[:, extra:, :].reshape(batch, side, side, width)
            return grid.permute(0, 3, 1, 2), Layout.CHANNELS_FIRST
    return tensor, layout


def _select(
    tensor: torch.Tensor, axis: int, spec: tuple[Any, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    size = tensor.shape[axis]
    if spec[0] == "slice":
        kept = torch.arange(size, device=tensor.device)[slice(*spec[1:])]
        index: list[Any] = [slice(None)] * tensor.dim()
        index[axis] = slice(*spec[1:])
        return tensor[tuple(index)], kept
    if spec[0] == "top":
        dims = [d for d in range(tensor.dim()) if d != axis % tensor.dim()]
        scores = tensor.float().mean(dim=dims)
        kept = scores.topk(min(spec[1], size)).indices
    else:
        kept = torch.tensor(spec[1:], device=tensor.device)
        if kept.min() < -size or kept.max() >= size:
            raise OptionError(
                f"channels={list(spec[1:])} is out of range for a map with {size} channels",
                option="channels",
                value=list(spec[1:]),
                valid=(f"{-size}..{size - 1}",),
            )
    return tensor.index_select(axis, kept % size), kept % size


def _reduce(tensor: torch.Tensor, axis: int, reducer: str, over: str) -> torch.Tensor:
    channel = axis % tensor.dim()
    if over == "channels":
        dims: list[int] = [channel]
    else:
        dims = [d for d in range(1, tensor.dim()) if d != channel]
        if not dims:
            return tensor
    if reducer == "mean":
        return tensor.mean(dim=dims, keepdim=over == "channels")
    if reducer == "max":
        return tensor.amax(dim=dims, keepdim=over == "channels")
    norm: torch.Tensor = torch.linalg.vector_norm(tensor, dim=dims, keepdim=over == "channels")
    return norm


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
