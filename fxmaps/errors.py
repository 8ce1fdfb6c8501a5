"""Exceptions and warnings raised by fxmaps.

Every exception derives from :class:`FxmapsError` and from the builtin that
matches its meaning, so ``except KeyError`` or ``except RuntimeError`` clauses
in user code keep working. This module imports nothing else from fxmaps.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

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
]


class FxmapsError(Exception):
    """Base class of every error fxmaps raises on purpose."""


class FxmapsWarning(UserWarning):
    """Something fxmaps did on the user's behalf that they should know about."""


class TraceError(FxmapsError, RuntimeError):
    """torch.fx could not trace the model, even with automatic leaf modules."""


class ShapeError(FxmapsError, ValueError):
    """The example input does not fit the model (wrong channels, too small, ...)."""


class InputError(FxmapsError, TypeError):
    """An argument has the wrong type or form (not a module, not a tensor, ...)."""


class DeviceError(FxmapsError, ValueError):
    """The input and the model are on different devices."""


class OptionError(FxmapsError, ValueError):
    """An option has a value outside the ones it accepts (an unknown kind, ...)."""


class OutputError(FxmapsError, OSError):
    """An output path that cannot be written: a missing or read-only folder."""


class NodeNotFoundError(FxmapsError, KeyError):
    """A node or layer name that the graph does not contain."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class GraphvizNotFoundError(FxmapsError, RuntimeError):
    """Graphviz's ``dot`` program, which draws graph diagrams, is not installed."""


class ImageError(FxmapsError, ValueError):
    """An image that cannot be read: missing, corrupt, not an image, or unreachable."""


class ModelLoadError(FxmapsError, ValueError):
    """A model specification or weights file that cannot be loaded."""


class MemoryLimitError(FxmapsError, MemoryError):
    """The requested maps would not fit in memory (estimated before the model runs)."""


def close_matches(word: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates that look like ``word``, best first."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)
