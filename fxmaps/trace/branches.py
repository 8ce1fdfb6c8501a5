"""Branches that only raise are checks, not control flow.

When fx asks for the truth value of a proxy, the frame that asked is read: if one
outcome of its pending conditional jump leads straight to a ``raise`` (an
``assert``, or ``if bad: raise ValueError(...)``), the condition is a check. The
tracer records it as ``torch._assert`` and takes the other outcome, on every
Python version.
"""

from __future__ import annotations

import bisect
import dis
from collections.abc import Iterable
from types import FrameType
from typing import Any

from fxmaps.trace.diagnose import describe_frame

__all__ = ["check_message", "raising_outcome"]


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


def check_message(frame: FrameType) -> str:
    """What a recorded check says when it fails at run time: its source line."""
    return f"check traced by fxmaps failed: {describe_frame(frame, frame.f_lineno)}"
