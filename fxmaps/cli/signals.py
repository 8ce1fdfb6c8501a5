"""SIGINT and SIGTERM on the command line: one line on stderr, exit 130 or 143, no leftovers.

Two phases. While the command starts, Python imports torch (seconds) and nothing has been
written yet: :func:`quiet_start_up`, which ``fxmaps/__init__.py`` calls before it imports
anything heavy, makes either signal print one line and end the process at once, with no
traceback, when the process is the ``fxmaps`` command (the console script, or
``python -m fxmaps``); imported as a library, fxmaps leaves signals alone. Once the command
runs, :func:`unwinding` turns either signal into an exception (``KeyboardInterrupt``,
:class:`Terminated`) that unwinds the command, so every ``finally`` that removes temporary
files runs (Python's own SIGTERM ends the process without running any), and the command
line prints the line and returns the exit code. Cleanup is never cut short: a second signal
while the first unwinds is ignored, and ``fxmaps.files`` holds signals while it moves or
removes files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from fxmaps.files import stop_pending, stopping

__all__ = ["Terminated", "exit_code", "message", "quiet_start_up", "swallowed", "unwinding"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_WORDS = {int(signal.SIGINT): "interrupted", int(signal.SIGTERM): "terminated (SIGTERM)"}


class Terminated(BaseException):
    """SIGTERM, raised where the command was, so that it unwinds (cleanup runs).

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` clauses
    do not swallow it.
    """

    def __init__(self, number: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by signal {number}")
        self.number = number


def exit_code(err: BaseException) -> int:
    """The exit code a command ends with after ``err`` (a signal): 128 + its number."""
    number = err.number if isinstance(err, Terminated) else signal.SIGINT
    return 128 + number


def message(err: BaseException) -> str:
    """The one line printed on stderr for ``err`` (``KeyboardInterrupt`` or :class:`Terminated`)."""
    number = err.number if isinstance(err, Terminated) else signal.SIGINT
    return f"fxmaps: {_WORDS.get(number, f'ended by signal {number}')}"


def quiet_start_up() -> None:
    """In the ``fxmaps`` command, while it starts: SIGINT or SIGTERM print one line and end it
    (exit 130 or 143). Does nothing when fxmaps is imported as a library."""
    if not _is_command() or threading.current_thread() is not threading.main_thread():
        return
    for number in _SIGNALS:
        if signal.getsignal(number) not in (signal.SIG_IGN, None):  # ignored: leave it so
            signal.signal(number, _end_now)


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """While the block runs, SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated`
    (once: later signals are ignored while it unwinds); the previous handlers come back after.

    Only the main thread can set handlers; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in _SIGNALS}
    ours = [number for number in _SIGNALS if previous[number] is not signal.SIG_IGN]

    def raise_once(number: int, frame: FrameType | None) -> None:
        for each in ours:
            signal.signal(each, signal.SIG_IGN)  # let the cleanup run to its end
        err = KeyboardInterrupt() if number == signal.SIGINT else Terminated(number)
        stopping(err)  # raised again before any file appears, should Python swallow it
        raise err

    unraisable = sys.unraisablehook
    for number in ours:
        signal.signal(number, raise_once)
    sys.unraisablehook = functools.partial(_quiet_when_stopping, unraisable)
    try:
        yield
    finally:
        for number in ours:
            signal.signal(number, previous[number])
        sys.unraisablehook = unraisable
        stopping(None)


def swallowed() -> BaseException | None:
    """The exception a signal raised that Python swallowed (it landed in a weakref callback
    or a ``__del__``), if the command ran on to its end without meeting it again."""
    try:
        stop_pending()
    except (KeyboardInterrupt, Terminated) as err:
        return err
    return None


def _quiet_when_stopping(previous: Callable[[Any], object], unraisable: Any) -> None:
    """Python's report of an exception it could not raise, except for the signal's own:
    that one is raised again (``fxmaps.files.stop_pending``), not printed."""
    if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        previous(unraisable)


def _end_now(number: int, frame: FrameType | None) -> None:
    """Nothing is written yet: say so in one line and end the process."""
    sys.stderr.write(message(Terminated(number)) + "\n")
    sys.stderr.flush()
    os._exit(128 + number)


def _is_command() -> bool:
    """Whether this process runs the ``fxmaps`` command: the console script, or
    ``python -m fxmaps`` (whose ``sys.argv[0]`` is ``-m`` while Python imports the package)."""
    if Path(sys.argv[0]).name in ("fxmaps", "fxmaps.exe"):
        return True
    if sys.argv[0] != "-m":
        return False
    argv: list[str] = list(getattr(sys, "orig_argv", ()))
    for at, word in enumerate(argv[1:], start=1):
        if word == "-m":
            return argv[at + 1 : at + 2] == ["fxmaps"]
        if word.startswith("-m"):
            return word == "-mfxmaps"
    return False
