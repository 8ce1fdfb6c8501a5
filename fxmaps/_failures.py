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
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, FunctionType
from typing import Any

import torch
from torch import fx, nn

__all__ = [
    "Failure",
    "Helper",
    "Patch",
    "diagnose",
    "is_assert",
    "patch_list",
    "patched_globals",
    "short",
    "trace_error_message",
]

_TORCH_DIR = str(Path(torch.__file__).parent)
_FX_DIR = str(Path(fx.__file__).parent)
_FXMAPS_DIR = str(Path(__file__).parent)

Helper = tuple[FunctionType, dict[str, Any]]
"""A helper function to autowrap, and the globals of the function that called it."""
Patch = tuple[dict[str, Any], str, FunctionType]
"""A global name to point at the autowrapped helper: namespace, name, helper."""


@dataclass(frozen=True)
class Failure:
    """A failed trace: the error, the module calls it left, its source line, a helper."""

    error: Exception
    module_stack: tuple[str, ...]
    location: str
    helper: Helper | None


def is_assert(frame: FrameType) -> bool:
    """Whether ``frame`` is evaluating the condition of an ``assert`` statement."""
    instructions = list(dis.get_instructions(frame.f_code))
    i = bisect.bisect_left(instructions, frame.f_lasti, key=lambda inst: inst.offset)
    return (
        i + 1 < len(instructions)
        and instructions[i].opname.startswith("POP_JUMP")
        and instructions[i].opname.endswith("IF_TRUE")
        and instructions[i + 1].opname == "LOAD_ASSERTION_ERROR"
    )


def diagnose(err: Exception, recorded: tuple[BaseException, tuple[str, ...]] | None) -> Failure:
    """Where tracing failed: the module stack, the user's source line, a helper to wrap.

    ``recorded`` is the error the tracer saw leave a module call, with the stack of
    module calls it left; it describes ``err`` only if it is ``err``.
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
        helper = _helper_candidate(frames, inner)
    return Failure(err, stack, location, helper)


def _is_user_frame(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return not (filename.startswith((_FX_DIR, _FXMAPS_DIR)) or filename.startswith("<"))


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
