"""Why tracing failed, and what to try next.

:func:`diagnose` reads a tracing error's traceback: the stack of module calls it
left, the user's source line that raised it, and a plain helper function on the
way that could be recorded as one call node instead (see :mod:`.autowrap`).
"""

from __future__ import annotations

import inspect
import linecache
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType, FunctionType

import torch
from torch import fx, nn

from fxmaps.trace.autowrap import Helper

__all__ = [
    "Failure",
    "current_line",
    "describe_frame",
    "diagnose",
    "short",
    "trace_error_message",
]

_TORCH_DIR = str(Path(torch.__file__).parent)
_FX_DIR = str(Path(fx.__file__).parent)
_FXMAPS_DIR = str(Path(__file__).parent.parent)


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
        location = describe_frame(frames[inner], linenos[inner])
        helper = _registered_helper(frames, inner, registered) or _helper_candidate(frames, inner)
    return Failure(err, stack, location, helper)


def _is_user_frame(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return not (filename.startswith((_FX_DIR, _FXMAPS_DIR)) or filename.startswith("<"))


def current_line() -> str:
    """The innermost line of the model's own code running now (outside torch and fxmaps),
    described as :func:`describe_frame` does; ``""`` when there is none."""
    frame = inspect.currentframe()
    while frame is not None:
        filename = frame.f_code.co_filename
        if _is_user_frame(frame) and not filename.startswith(_TORCH_DIR):
            return describe_frame(frame, frame.f_lineno)
        frame = frame.f_back
    return ""


def describe_frame(frame: FrameType, lineno: int) -> str:
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
