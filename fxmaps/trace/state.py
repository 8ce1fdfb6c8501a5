"""The model's state around a run: its train/eval modes and its buffers, put back after.

A run that sets a model's mode and puts it back must not overlap another one on
the same model: a second thread would save the first one's temporary mode as the
model's own, and restore it last. And while torch.fx traces any model it patches
``nn.Module.__call__`` and ``__getattr__`` process-wide, so a module called (or a
parameter read) in another thread meanwhile goes into that trace: the trace fails or
takes in nodes of the other call, and the other call fails or gets proxies. So every
run that changes a model for a while, or runs one (a trace, a forward pass between
saving and restoring), holds one process-wide re-entrant lock: fxmaps's calls take
turns, on one model or on several.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["model_lock", "preserved_state"]

_LOCK = threading.RLock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that runs and traces of ``model`` hold (re-entrant: a run may nest a
    trace, as a captured model's does): one for all models, see the module's docstring.

    Taken before any other fxmaps lock (the extraction cache's), never after one.
    """
    del model  # every model's runs exclude every trace
    return _LOCK


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, train: bool) -> Iterator[None]:
    """Run a block with ``model`` in the given mode, holding its lock; restore modes and
    buffers after.

    Only a buffer that was written to (BatchNorm's running statistics in training mode)
    is copied back. The others are not touched, so their version counters stay put and a
    user's autograd graph that saved one for backward (``loss = (bn.running_mean *
    w).sum()``) still runs backward afterwards.
    """
    with model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        buffers = [(b, b.detach().clone(), b._version) for b in model.buffers()]
        try:
            model.train(train)
            yield
        finally:
            _restore(buffers)
            for module, mode in modes:
                module.training = mode


def _restore(buffers: list[tuple[torch.Tensor, torch.Tensor, int]]) -> None:
    """Copy each saved value back into its buffer, where the buffer was written to."""
    with torch.no_grad():
        for buffer, saved, version in buffers:
            if buffer.shape == saved.shape and _written(buffer, saved, version):
                buffer.copy_(saved)


def _written(buffer: torch.Tensor, saved: torch.Tensor, version: int) -> bool:
    """Whether ``buffer`` was written to since ``saved`` was copied from it.

    The version counter alone does not tell: BatchNorm's kernel updates its running
    statistics in place without moving theirs. So the bits are compared too (bits, not
    values: a NaN equals itself, and -0.0 differs from 0.0).
    """
    if buffer._version != version:
        return True
    if buffer.is_meta:  # no values to compare or to restore
        return False
    if buffer.layout != torch.strided or buffer.is_quantized:
        return True  # no bits to compare: put it back as it was
    return not torch.equal(_bits(buffer), _bits(saved))


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)
