"""The model's state around a run: its train/eval modes and its buffers, put back after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["preserved_state"]


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, train: bool) -> Iterator[None]:
    """Run a block with ``model`` in the given mode; restore modes and buffers after."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        model.train(train)
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                if buffer.shape == saved.shape:
                    buffer.copy_(saved)
        for module, mode in modes:
            module.training = mode
