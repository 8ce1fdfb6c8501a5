"""Why tracing failed, and what to try next.

:func:`diagnose` reads a tracing error's traceback: the stack of module calls it
left, the user's source line that raised it, and a plain helper function on the
way that could be recorded as one call node instead (autowrapped). The helpers
are patched into the globals their callers read them from, for one trace only.
"""

from __future__ import annotations

import bisect
import contextlib
import dis
import functools
import linecache
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType, FunctionType
from typing import Any

import torch
from torch import fx, nn

__all__ = [
    "Failure",
    "Helper",
    "Patch",
    "Untraceable",
    "check_message",
    "diagnose",
    "known_untraceable",
    "patch_list",
    "patched_globals",
    "raising_outcome",
    "short",
    "trace_error_message",
]

_TORCH_DIR = str(Path(torch.__file__).parent)
_FX_DIR = str(Path(fx.__file__).parent)
_FXMAPS_DIR = str(Path(__file__).parent.parent)

Helper = tuple[FunctionType, dict[str, Any]]
"""A helper function to autowrap, and the globals of the function that called it."""
Patch = tuple[dict[str, Any], str, FunctionType]
"""A global name to point at the autowrapped helper: namespace, name, helper."""

_TIMM_REGISTRIES = ("timm.layers._fx", "timm.models._features_fx", "timm.models.fx_features")
"""Where timm versions keep ``_leaf_modules`` and ``_autowrap_functions`` (newest first)."""


@dataclass(frozen=True)
class Untraceable:
    """Module classes and functions a library registered as not symbolically traceable."""

    classes: tuple[type[nn.Module], ...] = ()
    codes: frozenset[CodeType] = frozenset()
    """The code objects of the registered functions, to find them on a traceback."""


def known_untraceable() -> Untraceable:
    """What timm registered with ``register_notrace_module`` and ``register_notrace_function``.

    Read only when timm is already imported: a model built from timm modules has
    imported it, and any other model cannot hold a timm module, so fxmaps never
    imports timm itself.
    """
    classes: set[type[nn.Module]] = set()
    codes: set[CodeType] = set()
    for name in _TIMM_REGISTRIES:
        registry = sys.modules.get(name)
        for cls in getattr(registry, "_leaf_modules", ()):
            if isinstance(cls, type) and issubclass(cls, nn.Module):
                classes.add(cls)
        for function in getattr(registry, "_autowrap_functions", ()):
            if isinstance(function, FunctionType):
                codes.add(function.__code__)
    return Untraceable(tuple(sorted(classes, key=lambda c: c.__qualname__)), frozenset(codes))


@dataclass(frozen=True)
class Failure:
    """A failed trace: the error, the module calls it left, its source line, a helper."""

    error: Exception
    module_stack: tuple[str, ...]
    location: str
    helper: Helper | None
    note: str = ""
    """Why fxmaps made a module opaque beyond the error, if more than the error says."""

    @property
    def reason(self) -> str:
        return f"{short(self.error)} ({self.note})" if self.note else short(self.error)


def raising_outcome(frame: FrameType) -> bool | None:
    """The truth value that sends ``frame``'s pending branch straight to a ``raise``.

    ``frame`` is converting a condition to ``bool`` for a conditional jump. When one
    outcome leads, without any other branch, to ``raise`` (an ``assert``, also in
    ``assert a and b``, or ``if cond: raise ValueError(...)``), the condition is a
    check, not control flow: the caller records it and takes the other outcome.
    Returns ``None`` for any other branch, and for a ``raise`` inside a ``try``
    (Python 3.11+ tells; it may be caught and so be control flow after all).
    """
    instructions = list(dis.get_instructions(frame.f_code))
    handled = getattr(dis.Bytecode(frame.f_code), "exception_entries", ())
    by_offset = {inst.offset: i for i, inst in enumerate(instructions)}
    i = bisect.bisect_left(instructions, frame.f_lasti, key=lambda inst: inst.offset)
    negated = False
    while i < len(instructions) and instructions[i].opname in _BEFORE_JUMP:
        negated ^= instructions[i].opname == "UNARY_NOT"
        i += 1
    if i + 1 >= len(instructions):
        return None
    jump = instructions[i]
    if not (jump.opname.startswith("POP_JUMP") and jump.opname.endswith(("IF_TRUE", "IF_FALSE"))):
        return None
    jumps_on = jump.opname.endswith("IF_TRUE")
    target = by_offset.get(jump.argval) if isinstance(jump.argval, int) else None
    outcome = None
    if _raises(instructions, i + 1, handled):
        outcome = not jumps_on
    elif target is not None and _raises(instructions, target, handled):
        outcome = jumps_on
    return None if outcome is None else outcome != negated


_BEFORE_JUMP = frozenset({"TO_BOOL", "UNARY_NOT", "CACHE", "EXTENDED_ARG", "NOP"})
_BRANCHING = ("JUMP", "RETURN", "YIELD", "FOR_ITER", "SEND", "RERAISE", "SETUP")


def _raises(instructions: list[dis.Instruction], start: int, handled: Iterable[Any]) -> bool:
    """Whether the code from ``start`` reaches a ``raise`` outside any ``try`` with no
    branch on the way."""
    for inst in instructions[start:]:
        if inst.opname == "RAISE_VARARGS":
            return not any(entry.start <= inst.offset < entry.end for entry in handled)
        if any(word in inst.opname for word in _BRANCHING):
            return False
    return False


def diagnose(
    err: Exception,
    recorded: tuple[BaseException, tuple[str, ...]] | None,
    registered: frozenset[CodeType] = frozenset(),
) -> Failure:
    """Where tracing failed: the module stack, the user's source line, a helper to wrap.

    ``recorded`` is the error the tracer saw leave a module call, with the stack of
    module calls it left; it describes ``err`` only if it is ``err``. A function
    whose code is in ``registered`` (timm's not-traceable functions) is the helper
    to wrap when the failure passed through one.
    """
    stack = recorded[1] if recorded and recorded[0] is err else ()
    frames = [frame for frame, _ in traceback.walk_tb(err.__traceback__)]
    linenos = [lineno for _, lineno in traceback.walk_tb(err.__traceback__)]
    user = [i for i, frame in enumerate(frames) if _is_user_frame(frame)]
    outside_torch = [i for i in user if not frames[i].f_code.co_filename.startswith(_TORCH_DIR)]
    user = outside_torch or user
    location = ""
    helper = None
    if user:
        inner = user[-1]
        location = _describe_frame(frames[inner], linenos[inner])
        helper = _registered_helper(frames, inner, registered) or _helper_candidate(frames, inner)
    return Failure(err, stack, location, helper)


def _is_user_frame(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return not (filename.startswith((_FX_DIR, _FXMAPS_DIR)) or filename.startswith("<"))


def check_message(frame: FrameType) -> str:
    """What a recorded check says when it fails at run time: its source line."""
    return f"check traced by fxmaps failed: {_describe_frame(frame, frame.f_lineno)}"


def _describe_frame(frame: FrameType, lineno: int) -> str:
    filename = frame.f_code.co_filename
    source = linecache.getline(filename, lineno).strip()
    return f"{filename}:{lineno} in {frame.f_code.co_name}: {source}"


def _helper_candidate(frames: list[FrameType], inner: int) -> Helper | None:
    """The innermost plain module-level function between the failure and its module."""
    for i in range(inner, 0, -1):
        frame = frames[i]
        if isinstance(frame.f_locals.get("self"), nn.Module):
            return None
        function = frame.f_globals.get(frame.f_code.co_name)
        filename = frame.f_code.co_filename
        if (
            isinstance(function, FunctionType)
            and function.__code__ is frame.f_code
            and not filename.startswith((_TORCH_DIR, _FXMAPS_DIR))
        ):
            return function, frames[i - 1].f_globals
    return None


def _registered_helper(
    frames: list[FrameType], inner: int, registered: frozenset[CodeType]
) -> Helper | None:
    """The outermost registered function between the failure and its module call."""
    found = None
    for i in range(inner, 0, -1):
        frame = frames[i]
        if isinstance(frame.f_locals.get("self"), nn.Module):
            break
        function = frame.f_globals.get(frame.f_code.co_name)
        if (
            isinstance(function, FunctionType)
            and function.__code__ is frame.f_code
            and frame.f_code in registered
        ):
            found = (function, frames[i - 1].f_globals)
    return found


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


def short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first[:200]}"


def trace_error_message(model: nn.Module, failure: Failure) -> str:
    where = failure.module_stack[-1] if failure.module_stack else ""
    module = model.get_submodule(where) if where else model
    if where:
        owner = f"submodule {where!r} ({type(module).__name__})"
    else:
        owner = f"the model's own forward ({type(model).__name__})"
    return (
        f"fxmaps could not trace {type(model).__name__}: {short(failure.error)}, raised in "
        f"{owner} at {failure.location or 'an unknown line'}. Making submodules opaque did "
        "not help because the failing code runs outside any submodule. Try "
        "leaf_modules=[...] to keep a submodule whole, autowrap_functions=(fn,) for a helper "
        "function, or rewrite data-dependent Python control flow with tensor ops "
        "(torch.where) so that torch.fx can record it."
    )
