"""What extraction derives from a graph, kept for as long as the graph lives.

Building an extraction graph costs a rewrite and a recompile, and a memory estimate
a run on the meta device; repeated :func:`fxmaps.extract` calls on one graph reuse
both. The cache is keyed weakly by the :class:`~fxmaps.ModelGraph`, and no value
refers back to it, so an entry goes when its graph goes. A lock makes calls from
several threads on one graph safe.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from fxmaps.graph import ModelGraph

__all__ = ["cached", "store"]

T = TypeVar("T")

_ENTRIES: weakref.WeakKeyDictionary[ModelGraph, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()


def cached(graph: ModelGraph, key: Hashable, build: Callable[[], T]) -> T:
    """The value built for ``key`` on ``graph``, built on first use."""
    with _LOCK:
        entries = _ENTRIES.setdefault(graph, {})
        if key not in entries:
            entries[key] = build()
        return entries[key]  # type: ignore[no-any-return]


def store(graph: ModelGraph, key: Hashable, value: Any) -> None:
    """Replace what is kept for ``key`` on ``graph`` (an extraction rebuilt after a run)."""
    with _LOCK:
        _ENTRIES.setdefault(graph, {})[key] = value
