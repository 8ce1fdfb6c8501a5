"""Choosing layers, one language everywhere: by kind, name, glob pattern, layer or predicate.

A string that is a kind's value (``"conv"``, ``"add"``) selects that kind; a
string with ``*``, ``?`` or ``[`` is a glob pattern over node names
(``"layer3.*"``); any other string is a node name; a :class:`Layer` selects
itself (use it, or a predicate, for a node whose name is also a kind's).
Lists mix these freely. The result keeps the order asked for, execution order
within a kind or pattern, each node once. ``ModelGraph.layers(...)`` and
``extract(layers=...)`` both take it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

from fxmaps.errors import InputError, NodeNotFoundError, OptionError, close_matches
from fxmaps.facts import Kind
from fxmaps.graph.layer import Layer

if TYPE_CHECKING:
    from fxmaps.graph.model_graph import ModelGraph

__all__ = ["Selection", "require_layers", "select_layers"]

Selection: TypeAlias = "str | Kind | Iterable[str | Kind | Layer] | Callable[[Layer], bool]"
"""A kind, a node name, a glob pattern, a list of those or of layers, or a predicate."""

_KINDS = frozenset(kind.value for kind in Kind)
_GLOB = frozenset("*?[")


def select_layers(graph: ModelGraph, selection: Selection) -> list[Layer]:
    """The layers of ``graph`` that ``selection`` chooses, in the order asked for (maybe none).

    Raises:
        NodeNotFoundError: A name or pattern matches no node (close matches listed).
        InputError: An entry is neither a string, a kind, a layer nor a predicate.

    Example:
        >>> import torchvision, fxmaps
        >>> g = fxmaps.analyze(torchvision.models.resnet18())
        >>> [layer.name for layer in select_layers(g, ["layer4.1.conv*", "fc"])]
        ['layer4.1.conv1', 'layer4.1.conv2', 'fc']
    """
    if callable(selection) and not isinstance(selection, (str, Kind)):
        return [layer for layer in graph.layers() if selection(layer)]
    items = [selection] if isinstance(selection, (str, Kind)) else list(selection)
    found: dict[str, Layer] = {}
    for item in items:
        for layer in _resolve(graph, item):
            found.setdefault(layer.name, layer)
    return list(found.values())


def require_layers(graph: ModelGraph, selection: Selection) -> list[Layer]:
    """:func:`select_layers`, refusing a selection that chooses nothing.

    Raises:
        OptionError: The selection is empty, or chooses no node at all.
        NodeNotFoundError: As :func:`select_layers`.
        InputError: As :func:`select_layers`.
    """
    chosen = select_layers(graph, selection)
    if chosen:
        return chosen
    empty = not callable(selection) and not isinstance(selection, (str, Kind))
    name = type(graph.model).__name__
    if empty and not list(selection):  # type: ignore[arg-type]
        what = (
            f"selects nothing; pass a kind, node names or glob patterns. The kinds {name} has are: "
        )
    else:
        what = f"selects no node of {name}; the kinds it has are: "
    raise OptionError(
        f"layers={selection!r} {what}{kinds_present(graph)}",
        option="layers",
        value=selection,
        valid=tuple(sorted({layer.kind.value for layer in graph.layers()})),
    )


def kinds_present(graph: ModelGraph) -> str:
    """The model's kinds with their node counts: ``'activation (17), add (8), conv (17)'``."""
    counts: dict[str, int] = {}
    for layer in graph.layers():
        counts[layer.kind.value] = counts.get(layer.kind.value, 0) + 1
    return ", ".join(f"{kind} ({counts[kind]})" for kind in sorted(counts))


def _resolve(graph: ModelGraph, item: object) -> list[Layer]:
    if isinstance(item, Layer):
        return [graph.layer(item.name)]
    if isinstance(item, Kind) or item in _KINDS:
        wanted = Kind(item)
        return [layer for layer in graph.layers() if layer.kind is wanted]
    if not isinstance(item, str):
        raise InputError(
            f"layers entries must be kinds, node names, glob patterns or layers, got "
            f"{type(item).__name__} {item!r}",
            argument="layers",
            got=type(item).__name__,
        )
    if _GLOB & set(item):
        return _matching(graph, item)
    if item not in graph:
        raise _unknown(graph, item)
    return [graph.layer(item)]


def _matching(graph: ModelGraph, pattern: str) -> list[Layer]:
    matches = [layer for layer in graph.layers() if fnmatch.fnmatchcase(layer.name, pattern)]
    if not matches:
        names = [layer.name for layer in graph.layers()]
        similar = close_matches(pattern.replace("*", "").replace("?", ""), names)
        hint = f"; names like it: {', '.join(map(repr, similar))}" if similar else ""
        raise NodeNotFoundError(
            f"pattern {pattern!r} matches no node{hint}", name=pattern, candidates=tuple(similar)
        )
    return matches


def _unknown(graph: ModelGraph, name: str) -> NodeNotFoundError:
    """A string that is neither a kind nor a node name: close names, and the kinds there are."""
    names = [layer.name for layer in graph.layers()]
    similar = close_matches(name, names)
    hint = f"; did you mean {', '.join(map(repr, similar))}?" if similar else "."
    return NodeNotFoundError(
        f"no node named {name!r} in the graph of {type(graph.model).__name__} "
        f"({len(names)} nodes){hint} It is not a kind either; kinds are: "
        f"{', '.join(sorted(_KINDS))}",
        name=name,
        candidates=tuple(similar),
    )
