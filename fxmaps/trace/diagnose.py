"""Why tracing failed: where, and on what value.

:func:`diagnose` reads a tracing error's traceback: the stack of module calls it
left, the user's source line that raised it, and a plain helper function on the
way that could be recorded as one call node instead (see :mod:`.autowrap`). Where
the tracer saw the error raised on using a traced value as Python would (``if``,
``for``, ``len()``, ``range()``), the :class:`Blame` says which forward argument that
value is and whether it is computed from tensor sizes only; :mod:`.advice` turns
that into what to try.
"""

from __future__ import annotations

import inspect
import linecache
import operator
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType, FunctionType

import torch
from torch import fx, nn

from fxmaps.trace.autowrap import Helper

__all__ = [
    "Blame",
    "Failure",
    "current_line",
    "describe_frame",
    "diagnose",
    "short",
]

_TORCH_DIR = str(Path(torch.__file__).parent)
_FX_DIR = str(Path(fx.__file__).parent)
_FXMAPS_DIR = str(Path(__file__).parent.parent)


_SHAPE_METHODS = frozenset({"size", "dim", "ndimension", "numel", "nelement"})
_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim"})
_CONTAINER_METHODS = frozenset({"keys", "values", "items"})


@dataclass(frozen=True)
class Blame:
    """The traced value whose use as a Python value failed.

    Attributes:
        use: How it was used: ``"bool"`` (``if``, ``while``, ``and``), ``"iter"``
            (``for``, ``*`` or ``**`` unpacking), ``"len"``, ``"index"`` (``range()``,
            an index into a list).
        argument: The ``forward`` argument the value is, or an item of (``"xs"``,
            ``"*args"``, ``"**kwargs"``); ``None`` for a computed value.
        shape_only: The value is computed from tensor sizes only (``x.shape``,
            ``x.size(-1)``, ``x.dim()``), never from the tensors' data.
    """

    use: str
    argument: str | None
    shape_only: bool


@dataclass(frozen=True)
class Failure:
    """A failed trace: the error, the module calls it left, its source line, a helper."""

    error: Exception
    module_stack: tuple[str, ...]
    location: str
    helper: Helper | None
    note: str = ""
    """Why fxmaps made a module opaque beyond the error, if more than the error says."""
    blame: Blame | None = None
    """The traced value whose use raised the error, where the tracer saw it."""

    @property
    def reason(self) -> str:
        return f"{short(self.error)} ({self.note})" if self.note else short(self.error)


def diagnose(
    err: Exception,
    recorded: tuple[BaseException, tuple[str, ...]] | None,
    registered: frozenset[CodeType] = frozenset(),
    *,
    blamed: tuple[BaseException, str, fx.Node] | None = None,
) -> Failure:
    """Where tracing failed: the module stack, the user's source line, a helper to wrap.

    ``recorded`` is the error the tracer saw leave a module call, with the stack of
    module calls it left; it describes ``err`` only if it is ``err``. A function
    whose code is in ``registered`` (timm's not-traceable functions) is the helper
    to wrap when the failure passed through one. ``blamed`` is the error the tracer
    saw raised on using a traced value, how it was used and the value's node; it
    describes ``err`` only if it is ``err``.
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
    blame = _blame(blamed[1], blamed[2]) if blamed and blamed[0] is err else None
    return Failure(err, stack, location, helper, blame=blame)


def _blame(use: str, node: fx.Node) -> Blame:
    return Blame(use, _argument_of(node), _from_sizes_only(node))


def _argument_of(node: fx.Node) -> str | None:
    """The ``forward`` argument ``node`` is, or an item or the keys of: ``xs[0]``,
    ``kwargs.keys()``."""
    while True:
        if node.op == "placeholder":
            return str(node.target)
        item = node.op == "call_function" and node.target is operator.getitem
        keys = node.op == "call_method" and node.target in _CONTAINER_METHODS
        if not (item or keys) or not isinstance(node.args[0], fx.Node):
            return None
        node = node.args[0]


def _from_sizes_only(node: fx.Node) -> bool:
    """Whether ``node`` is computed from tensor sizes only: every path back to a tensor
    passes a size (``x.shape``, ``x.size()``, ``x.dim()``), through Python's operators."""
    todo, seen, sizes = [node], {node}, 0
    while todo:
        current = todo.pop()
        if _is_size(current):
            sizes += 1
            continue
        if not _is_python_op(current):
            return False
        for parent in current.all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return sizes > 0


def _is_size(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    attribute = node.args[1] if len(node.args) > 1 else None
    return node.op == "call_function" and node.target is getattr and attribute in _SHAPE_ATTRIBUTES


def _is_python_op(node: fx.Node) -> bool:
    """Arithmetic, comparison and indexing on Python values (what sizes go through)."""
    target = node.target
    python = getattr(target, "__module__", None) in ("_operator", "operator", "builtins", "math")
    return node.op == "call_function" and python


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
