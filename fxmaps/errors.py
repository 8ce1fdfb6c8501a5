"""Exceptions and warnings raised by fxmaps.

Every exception derives from :class:`FxmapsError` and from the builtin that
matches its meaning, so ``except KeyError`` or ``except RuntimeError`` clauses
in user code keep working. This module imports nothing else from fxmaps.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "DeviceError",
    "FxmapsError",
    "FxmapsWarning",
    "GraphvizNotFoundError",
    "ImageError",
    "InputError",
    "MemoryLimitError",
    "ModelLoadError",
    "NodeNotFoundError",
    "OptionError",
    "OutputError",
    "ShapeError",
    "TraceError",
    "close_matches",
    "one_line",
]


class FxmapsError(Exception):
    """Base class of every error fxmaps raises on purpose.

    The message is ``str(err)``; the facts behind it are attributes of each
    subclass (``NodeNotFoundError.name``, ``ShapeError.node``, ...), so code can
    act on a failure without parsing its text. Errors pickle with their facts.
    """

    def __init__(self, message: str = "", /) -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, dict(vars(self)))


def _restore(cls: type[FxmapsError], args: tuple[Any, ...], state: dict[str, Any]) -> FxmapsError:
    error = cls(*args)  # not cls.__new__(cls): MemoryError refuses that for MemoryLimitError
    error.args = args
    vars(error).update(state)
    return error


class FxmapsWarning(UserWarning):
    """Something fxmaps did on the user's behalf that they should know about."""


class TraceError(FxmapsError, RuntimeError):
    """torch.fx could not trace the model, even with automatic leaf modules.

    Attributes:
        module: The qualified name of the module whose code failed (``""`` for the
            model's own ``forward``), or ``None`` when not known.
        location: ``file:line in function: source`` of the failing line, or ``""``.
        cause: The original error, as ``Type: first line``.
        reason: What fxmaps found behind it, which the advice in the message fits:
            ``"wrapped forward"`` (a decorator's ``(*args, **kwargs)`` wrapper),
            ``"variadic forward"`` (``forward(self, *args, **kwargs)``), ``"extra
            arguments"`` (``forward(x, *args, **kwargs)``), ``"list input"``,
            ``"control flow on sizes"`` (``x.shape``), ``"data-dependent control
            flow"``, or ``""`` when it found none of these.
    """

    def __init__(
        self,
        message: str = "",
        /,
        *,
        module: str | None = None,
        location: str = "",
        cause: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.module = module
        self.location = location
        self.cause = cause
        self.reason = reason


class ShapeError(FxmapsError, ValueError):
    """The example input does not fit the model (wrong channels, too small, ...).

    Attributes:
        node: The public name of the node that failed, or ``None``.
        got: The shapes that node was given, or of the input that does not fit.
        expected: What it expects, in words (``""`` when not known).
        minimum: The smallest spatial side that fits, when the input is too small.
    """

    def __init__(
        self,
        message: str = "",
        /,
        *,
        node: str | None = None,
        got: tuple[Any, ...] | None = None,
        expected: str = "",
        minimum: int | None = None,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.got = got
        self.expected = expected
        self.minimum = minimum


class InputError(FxmapsError, TypeError):
    """An argument has the wrong type or form (not a module, not a tensor, ...).

    Attributes:
        argument: The name of the argument at fault, or ``None``.
        got: What it was, in words (``"str"``, ``"a list of str"``), or the bad value
            itself as text (a path, a name, a shape), or ``""``.
        node: The public name of the node the argument concerns, or ``None``.
    """

    def __init__(
        self,
        message: str = "",
        /,
        *,
        argument: str | None = None,
        got: str = "",
        node: str | None = None,
    ) -> None:
        super().__init__(message)
        self.argument = argument
        self.got = got
        self.node = node


class DeviceError(FxmapsError, ValueError):
    """The input and the model are on different devices.

    Attributes:
        expected: The device the model (or the option) needs, or ``None``.
        got: The device that was given, or ``None``.
    """

    def __init__(
        self, message: str = "", /, *, expected: str | None = None, got: str | None = None
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class OptionError(FxmapsError, ValueError):
    """An option has a value outside the ones it accepts (an unknown kind, ...).

    Attributes:
        option: The option's name, or ``None``.
        value: The value given.
        valid: The values or forms it accepts, when they can be listed.
    """

    def __init__(
        self,
        message: str = "",
        /,
        *,
        option: str | None = None,
        value: Any = None,
        valid: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.option = option
        self.value = value
        self.valid = valid


class OutputError(FxmapsError, OSError):
    """An output path that cannot be written: a missing or read-only folder.

    Attributes:
        path: The path that cannot be written, or ``None``.
    """

    def __init__(self, message: str = "", /, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NodeNotFoundError(FxmapsError, KeyError):
    """A node or layer name that the graph does not contain.

    Attributes:
        name: The name (or pattern) asked for, as given (a key that is not a string
            too: ``maps[0]`` gives ``0``).
        candidates: Up to five close matches, best first.
    """

    def __init__(
        self, message: str = "", /, *, name: object = None, candidates: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.name = name
        self.candidates = candidates

    def __str__(self) -> str:
        # KeyError quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class GraphvizNotFoundError(FxmapsError, RuntimeError):
    """Graphviz's ``dot`` program, which draws graph diagrams, is not installed."""


class ImageError(FxmapsError, ValueError):
    """An image that cannot be read: missing, corrupt, not an image, or unreachable.

    Attributes:
        source: The path or URL, or ``None``.
    """

    def __init__(self, message: str = "", /, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class ModelLoadError(FxmapsError, ValueError):
    """A model specification or weights file that cannot be loaded.

    Attributes:
        spec: The model specification or weights path, or ``None``.
        candidates: Close matches for a misspelt model name.
    """

    def __init__(
        self, message: str = "", /, *, spec: str | None = None, candidates: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.spec = spec
        self.candidates = candidates


class MemoryLimitError(FxmapsError, MemoryError):
    """The requested maps would not fit in memory (estimated before the model runs).

    Attributes:
        needed: The bytes the maps would take, or ``None`` (memory ran out during the run).
        limit: The limit in bytes, or ``None``.
    """

    def __init__(
        self, message: str = "", /, *, needed: int | None = None, limit: float | None = None
    ) -> None:
        super().__init__(message)
        self.needed = needed
        self.limit = limit


def close_matches(word: object, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates that look like ``word``, best first (none for a
    ``word`` that is not a string: ``None``, a number, an object)."""
    if not isinstance(word, str):
        return []
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type's name when it has none): what the
    command line prints after ``fxmaps: error:``, and the examples too."""
    return re.sub(r"\s*\n\s*", " ", str(err)).strip() or type(err).__name__
