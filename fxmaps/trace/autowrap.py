"""Helper functions recorded as one call node: found on a failed trace, patched for one trace.

A plain module-level function that fails on proxies (shape arithmetic with
``max``/``int``/``len``) is recorded as a single ``call_function`` node instead of
being traced into. It is reached through the globals of the code that calls it, so
for the length of one trace each such global name points at a wrapper that records
the call; the names are put back afterwards. Nothing of torch is patched.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from types import FunctionType
from typing import Any

from torch import fx

__all__ = ["Helper", "Patch", "holds_list", "patch_list", "patched_globals", "with_fresh_lists"]

Helper = tuple[FunctionType, dict[str, Any]]
"""A helper function to autowrap, and the globals of the function that called it."""
Patch = tuple[dict[str, Any], str, FunctionType]
"""A global name to point at the autowrapped helper: namespace, name, helper."""


def patch_list(helpers: Iterable[Helper]) -> tuple[Patch, ...]:
    """Every global name through which a helper is reached: its caller's and its own module's."""
    patches = []
    for function, caller_globals in helpers:
        for namespace in (caller_globals, function.__globals__):
            for name, value in list(namespace.items()):
                if value is function:
                    patches.append((namespace, name, function))
    return tuple(patches)


@contextlib.contextmanager
def patched_globals(patches: tuple[Patch, ...]) -> Iterator[None]:
    """Point each patched global name at a recording wrapper while the block runs."""
    saved = [(namespace, name, namespace[name]) for namespace, name, _ in patches]
    try:
        for namespace, name, function in patches:
            namespace[name] = _autowrapped(function)
        yield
    finally:
        for namespace, name, value in saved:
            namespace[name] = value


def _autowrapped(function: FunctionType) -> Callable[..., Any]:
    """Record ``function`` as one call node when any argument is a proxy."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        proxies = [a for a in (*args, *kwargs.values()) if isinstance(a, fx.Proxy)]
        if not proxies:
            return function(*args, **kwargs)
        return proxies[0].tracer.create_proxy("call_function", function, args, kwargs)

    return wrapper


def holds_list(value: Any) -> bool:
    """Whether ``value`` is, or holds inside tuples and dicts, a list."""
    if isinstance(value, list):
        return True
    if isinstance(value, (tuple, dict)):
        return any(holds_list(v) for v in (value.values() if isinstance(value, dict) else value))
    return False


@functools.cache
def with_fresh_lists(function: FunctionType) -> Callable[..., Any]:
    """``function`` given fresh copies of its list arguments at every call.

    fx stores list arguments as immutable lists in the graph; the generated code
    passes fresh list literals, but an ``fx.Interpreter`` (shape propagation) passes
    those lists, and a helper that updates a list it was given (torchvision's
    ``_get_window_and_shift_size``, which the model calls with fresh copies) fails.
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*_fresh(args), **_fresh(kwargs))

    return call


def _fresh(value: Any) -> Any:
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value
