"""The model's state around a run: its train/eval modes and its buffers, put back after.

A run that sets a model's mode and puts it back must not overlap another one on
the same model: a second thread would save the first one's temporary mode as the
model's own, and restore it last. So every run that changes a model for a while
(a trace, a forward pass between saving and restoring) holds that model's lock,
one re-entrant lock per model object, kept as long as the model lives. Calls on
one model take turns; calls on different models run side by side.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["model_lock", "preserved_state"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that runs of ``model`` hold (re-entrant: a run may nest another).

    Taken before any other fxmaps lock (the extraction cache's), never after one.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, train: bool) -> Iterator[None]:
    """Run a block with ``model`` in the given mode, holding its lock; restore modes and
    buffers after."""
    with model_lock(model):
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
