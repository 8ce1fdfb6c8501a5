"""Maps made ready to draw: a tensor, an array or one map of a ``FeatureMaps`` as a :class:`Panel`.

A panel holds ``(C, H, W)`` tiles (or ``(C, L)`` rows of a heat image) as float
arrays, the channel indices they show, a label and notes for the title. Channels-last
maps are turned channels-first, one sample of a batch and the middle slice of 3-D
maps are taken, channels are chosen by index or energy, and non-finite values masked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch

from fxmaps.classify import Layout
from fxmaps.errors import InputError, OptionError
from fxmaps.extract import FeatureMaps
from fxmaps.extract.transforms import to_spatial
from fxmaps.graph import format_shape
from fxmaps.render import canvas
from fxmaps.render.canvas import Array, MapLike

__all__ = ["Panel", "masked", "panel_of", "selected", "value_range"]


@dataclass(frozen=True)
class Panel:
    """Maps ready to draw: ``(C, H, W)`` tiles, or ``(C, L)`` rows when ``axis`` is set."""

    data: Array
    channels: npt.NDArray[np.int64]
    label: str
    notes: tuple[str, ...] = ()
    axis: str | None = None  # what the columns of a row image are: "position", "token"

    def title(self, title: str | None = None) -> list[str]:
        return [title or self.label, *self.notes]


def panel_of(source: MapLike | FeatureMaps, name: str | None, sample: int) -> Panel:
    if isinstance(source, FeatureMaps):
        name = _map_name(source, name)
        tensor, notes, axis = _channels_first(source[name], source.layer(name).layout)
        label = f"{name}  {format_shape(tuple(source[name].shape))}"
        kept = source.channels(name)
        return _batched(tensor, sample, label, kept, notes, axis or "position")
    if not isinstance(source, (torch.Tensor, np.ndarray)):
        raise InputError(
            f"cannot draw a {type(source).__name__}; pass a tensor, a NumPy array or a FeatureMaps",
            argument="maps_or_tensor",
            got=type(source).__name__,
        )
    shape = tuple(source.shape)
    label = f"{name}  {format_shape(shape)}" if name else format_shape(shape)
    if len(shape) in (4, 5):
        return _batched(source, sample, label, None, (), "position")
    if len(shape) in (2, 3):
        return _unbatched(
            canvas.as_float(source if len(shape) == 3 else source[None]), label, None, ()
        )
    raise InputError(
        f"cannot draw a map shaped {shape}; expected (N, C, H, W), (C, H, W), (H, W) or "
        "(N, C, D, H, W); 1-D maps (N, C, L) are drawn from a FeatureMaps, which knows their "
        "layout",
        argument="maps_or_tensor",
        got=f"a map shaped {shape}",
    )


def _map_name(maps: FeatureMaps, name: str | None) -> str:
    if name is not None:
        return name
    if len(maps) != 1:
        names = ", ".join(map(repr, list(maps)[:8])) + (", ..." if len(maps) > 8 else "")
        raise InputError(
            f"this FeatureMaps holds {len(maps)} maps; say which to draw with name=, "
            f"one of {names}",
            argument="name",
            got="None",
        )
    return next(iter(maps))


def _channels_first(
    tensor: torch.Tensor, layout: Layout
) -> tuple[torch.Tensor, tuple[str, ...], str | None]:
    """A channels-last map as channels-first, with a note and the axis name of token rows."""
    if layout is not Layout.CHANNELS_LAST or tensor.dim() < 3:
        return tensor, (), None
    if tensor.dim() > 4:
        return tensor.movedim(-1, 1), (), None
    spatial, now = to_spatial(tensor, layout)
    if now is not Layout.CHANNELS_FIRST:
        return tensor.transpose(1, 2), ("channels × tokens: no square grid",), "token"
    dropped = tensor.shape[1] - spatial.shape[2] * spatial.shape[3] if tensor.dim() == 3 else 0
    return spatial, ((f"{dropped} leading token(s) dropped",) if dropped else ()), None


def _batched(
    source: MapLike,
    sample: int,
    label: str,
    kept: torch.Tensor | None,
    notes: tuple[str, ...],
    axis: str,
) -> Panel:
    size = len(source)
    if size == 0:
        raise InputError(f"cannot draw {label}: the batch is empty", got="an empty batch")
    if isinstance(sample, bool) or not isinstance(sample, int) or not -size <= sample < size:
        raise OptionError(
            f"sample={sample!r} is out of range for a batch of {size}; use 0 to {size - 1}",
            option="sample",
            value=sample,
            valid=(f"0..{size - 1}",),
        )
    notes = (*notes, f"sample {sample % size} of {size}") if size > 1 else notes
    item = canvas.as_float(source[sample])
    if item.ndim == 1:
        return _unbatched(item[None], label, None, notes, axis="feature")
    return _unbatched(item, label, kept, notes, axis=axis if item.ndim == 2 else None)


def _unbatched(
    item: Array,
    label: str,
    kept: torch.Tensor | None,
    notes: tuple[str, ...],
    axis: str | None = None,
) -> Panel:
    if item.ndim == 4:
        depth = item.shape[1]
        item = item[:, depth // 2]
        notes = (*notes, f"middle depth slice {depth // 2} of {depth}")
    if item.ndim not in (2, 3) or 0 in item.shape:
        raise InputError(
            f"cannot draw maps shaped {item.shape} (channels first); nothing to show",
            got=f"maps shaped {item.shape}",
        )
    channels = np.arange(len(item)) if kept is None else kept.detach().cpu().numpy()
    if len(channels) != len(item):
        channels = np.arange(len(item))
    return Panel(item, channels.astype(np.int64), label, notes, axis)


def selected(panel: Panel, order: str, count: int) -> Panel:
    total = len(panel.data)
    count = min(count, total)
    picks = np.arange(count)
    if order == "energy":
        picks = np.argsort(-_energy(panel.data), kind="stable")[:count]
    notes = panel.notes
    if count < total or (order == "energy" and total > 1):
        notes = (*notes, f"{count} of {total} channels" + (" by energy" * (order == "energy")))
    return replace(panel, data=panel.data[picks], channels=panel.channels[picks], notes=notes)


def _energy(data: Array) -> npt.NDArray[np.float64]:
    """Mean absolute value of each map over its finite values (-1 for none)."""
    flat = data.reshape(len(data), -1)
    finite = np.isfinite(flat)
    total = np.where(finite, np.abs(flat), 0).sum(axis=1, dtype=np.float64)
    count = finite.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), -1.0)


def masked(panel: Panel) -> tuple[Panel, str | None]:
    """Non-finite values as NaN, and a sentence about them when there are any."""
    bad = ~np.isfinite(panel.data)
    if not bad.any():
        return panel, None
    where = panel.channels[bad.reshape(len(bad), -1).any(axis=1)]
    listed = ", ".join(map(str, where[:8])) + (", ..." if len(where) > 8 else "")
    message = (
        f"{int(bad.sum())} NaN or infinite values in channel(s) {listed} of {panel.label}; "
        "they are masked and drawn in magenta"
    )
    return replace(panel, data=np.where(bad, np.float32(np.nan), panel.data)), message


def value_range(data: Array, *, shared: bool) -> tuple[Array, float, float]:
    """Values to draw and the colour limits: per-map scaled to [0, 1], or one real range."""
    if not shared:
        return canvas.scaled(data, shared=False), 0.0, 1.0
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return data, lo, hi if hi > lo else lo + 1.0
