"""Progress bars where someone watches them: on a terminal, never in a log.

Every progress bar of fxmaps, the library's (``channel_stats``, ``report``) and the
command line's, goes through :func:`progress`: ``show=True`` asks for a bar, and the
bar is drawn only when standard error is a terminal. Written to a file or a pipe (a
CI log, ``2> log``, a notebook's captured stream), tqdm's ``\\r`` frames would be
noise, so nothing is written there.

Example:
    >>> from fxmaps.progress import progress
    >>> sum(progress(range(4), description="counting", unit="number"))  # no terminal here
    6
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any, TypeVar

__all__ = ["on_terminal", "progress"]

T = TypeVar("T")


def on_terminal(stream: IO[Any] | None = None) -> bool:
    """Whether ``stream`` (standard error by default) is a terminal someone watches.

    A closed stream, or an object without ``isatty`` (a replaced ``sys.stderr``), is not.
    """
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def progress(
    items: Iterable[T], *, description: str, unit: str, show: bool = True, leave: bool = True
) -> Iterable[T]:
    """``items``, with a tqdm bar on standard error while they are iterated, when ``show``
    and standard error is a terminal; ``items`` themselves otherwise.

    Args:
        items: What to iterate (its ``len`` gives the bar its total, where it has one).
        description: The bar's label.
        unit: What one item is, in words (``"batch"``, ``"layer"``).
        show: Whether a bar is wanted at all.
        leave: Keep the finished bar on the terminal (``False``: clear it).
    """
    if not show or not on_terminal():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, unit=unit, leave=leave, file=sys.stderr)
