"""Oracles fxmaps does not share: what forward hooks see when the model runs by itself."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    return value


def hook_outputs(model: nn.Module, *inputs: torch.Tensor) -> dict[str, list[Any]]:
    """Each module's output per call, cloned the moment the hook runs (so later in-place
    ops cannot change it), from one plain forward pass without gradients."""
    seen: dict[str, list[Any]] = defaultdict(list)
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: seen[name].append(_clone(out)))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen
