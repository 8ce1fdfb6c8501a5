"""What :meth:`ChannelStats.load` checks before it builds records.

A statistics file is a ``torch.save`` of plain containers: a format tag, ``samples``,
``topk``, ``score`` and, under ``layers``, a dict from node name to the tensors of a
:class:`LayerStats`. Every entry is checked (names, types, which tensors are there, their
shapes and dtypes) and a bad file gives one :class:`InputError` that names the bad entry.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from fxmaps.errors import InputError
from fxmaps.files import short

__all__ = ["FORMAT", "checked_stats"]

FORMAT = "fxmaps.channel_stats/1"

_ROWS = ("mean", "std", "max", "positive")
"""The tensors with one value per channel."""
_TOP = ("top_indices", "top_scores")
"""The ``(C, k)`` tensors."""


def checked_stats(path: str | os.PathLike[str], payload: Any) -> dict[str, dict[str, torch.Tensor]]:
    """The ``layers`` of ``payload``, each entry checked; :class:`InputError` where one is bad."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise bad_stats(path, f"no {FORMAT!r} format tag")
    for key in ("samples", "topk"):
        if type(payload.get(key)) is not int or payload[key] < 0:
            raise bad_stats(path, f"{key!r} is {payload.get(key)!r}, not a count")
    if payload.get("score") not in ("max", "mean"):
        raise bad_stats(path, f"'score' is {payload.get('score')!r}, not 'max' or 'mean'")
    layers = payload.get("layers")
    if not isinstance(layers, dict):
        raise bad_stats(path, f"'layers' is a {type(layers).__name__}, not a dict by node name")
    for name, values in layers.items():
        _check_layer(path, name, values)
    return layers


def _check_layer(path: str | os.PathLike[str], name: Any, values: Any) -> None:
    if not isinstance(name, str):
        raise bad_stats(path, f"node name {name!r} is not a string")
    if not isinstance(values, dict) or set(values) != {*_ROWS, *_TOP}:
        got = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise bad_stats(path, f"{name!r} has {got}; expected {sorted({*_ROWS, *_TOP})}")
    for key, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise bad_stats(path, f"{name!r}: {key!r} is a {type(value).__name__}, not a tensor")
    channels = values["mean"].shape[:1]
    for key in _ROWS:
        if values[key].ndim != 1 or values[key].shape != channels:
            raise bad_stats(path, f"{name!r}: {key!r} has shape {tuple(values[key].shape)}")
    k = values["top_indices"].shape[1:2]
    for key in _TOP:
        if values[key].ndim != 2 or values[key].shape != (*channels, *k):
            raise bad_stats(path, f"{name!r}: {key!r} has shape {tuple(values[key].shape)}")
    if values["top_indices"].is_floating_point() or values["top_indices"].is_complex():
        raise bad_stats(path, f"{name!r}: 'top_indices' is {values['top_indices'].dtype}")


def bad_stats(path: str | os.PathLike[str], why: str = "") -> InputError:
    """The error for a file that :meth:`ChannelStats.save` did not write (and why, if known)."""
    reason = f": {short(why)}" if why else ""
    return InputError(
        f"{str(path)!r} is not a file written by ChannelStats.save{reason}",
        argument="path",
        got=str(path),
    )
