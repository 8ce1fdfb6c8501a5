"""The torch ops an eager ``forward`` runs between its module calls, seen one by one.

A :class:`~torch.overrides.TorchFunctionMode` (torch's own extension point, entered
for one run and left after) sees every torch function and tensor method the Python
code calls. :class:`OpWatch` hands the ones that count to a callback while it is
*on*: ops that make a tensor or write into one. Inside module calls that run
otherwise (leaves, traced regions) it is switched off. Capture and extraction use
the same rule, so the n-th op of an eager call is the same op in both.
"""

from __future__ import annotations

import builtins
import contextlib
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from fxmaps.trace.inputs import tensor_leaves

__all__ = ["OpCall", "OpWatch", "as_fx_call"]

OpCall = Callable[[Any, tuple[Any, ...], dict[str, Any], Any], Any]
"""Sees one op: ``(func, args, kwargs, result) -> result`` (it may replace the result)."""

_INPLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__"})


class OpWatch(TorchFunctionMode):
    """Calls ``seen`` for each counted op while :attr:`on` (see the module docstring)."""

    def __init__(self, seen: OpCall) -> None:
        super().__init__()
        self.seen = seen
        self.on = False

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if not self.on:
            return func(*args, **kwargs)
        if getattr(func, "__name__", "") == "__iter__":  # iterating a tensor: unbind it
            parts = self.seen(torch.Tensor.unbind, (args[0], 0), {}, args[0].unbind(0))
            return iter(parts)
        result = func(*args, **kwargs)
        if counts(func, result):
            return self.seen(func, args, kwargs, result)
        return result

    @contextlib.contextmanager
    def switched(self, on: bool) -> Iterator[None]:
        """Run a block with the watch on or off, then put it back."""
        before = self.on
        self.on = on
        try:
            yield
        finally:
            self.on = before


def counts(func: Any, result: Any) -> bool:
    """Whether an op counts: it makes a tensor, or writes into one."""
    if tensor_leaves(result):
        return True
    name = getattr(func, "__name__", "")
    return name in _INPLACE_DUNDERS or (name.endswith("_") and not name.endswith("__"))


def as_fx_call(func: Any, args: tuple[Any, ...]) -> tuple[str, Any, tuple[Any, ...]]:
    """The fx op, target and args that record ``func(*args)``: ``call_method`` for tensor
    methods, ``call_function`` otherwise (``operator.setitem`` for item assignment,
    ``getattr`` for tensor properties such as ``.T``)."""
    name = getattr(func, "__name__", "")
    if name == "__setitem__":
        return "call_function", operator.setitem, args
    if name == "__get__":
        owner = getattr(func, "__self__", None)
        return "call_function", builtins.getattr, (args[0], getattr(owner, "__name__", ""))
    method = getattr(torch.Tensor, name, None)
    if method is not None and method is func and args and isinstance(args[0], torch.Tensor):
        return "call_method", name, args
    return "call_function", func, args
