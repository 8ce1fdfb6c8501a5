"""Choosing layers: by kind, by name, by glob pattern, or with a predicate.

A string that is a kind's value (``"conv"``, ``"add"``) selects that kind; a
string with ``*``, ``?`` or ``[`` is a glob pattern over node names
(``"layer3.*"``); any other string is a node name; a :class:`Layer` selects
itself (use it, or a predicate, for a node whose name is also a kind's).
Lists mix these freely. The result keeps the order asked for, execution order
within a kind or pattern, each node once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import TypeAlias

from fxmaps.classify import Kind
from fxmaps.errors import InputError, NodeNotFoundError, OptionError, close_matches
from fxmaps.graph.model_graph import Layer, ModelGraph

__all__ = ["Selection", "select_layers"]

Selection: TypeAlias = "str | Kind | Iterable[str | Kind | Layer] | Callable[[Layer], bool]"
"""A kind, a node name, a glob pattern, a list of those or of layers, or a predicate."""

_KINDS = frozenset(kind.value for kind in Kind)
_GLOB = frozenset("*?[")


def select_layers(graph: ModelGraph, layers: Selection) -> list[Layer]:
    """The layers of ``graph`` that ``layers`` chooses, in the order asked for.

    Raises:
        NodeNotFoundError: A name or pattern matches no node (close matches listed).
        OptionError: The selection is empty, or chooses no node at all.
        InputError: An entry is neither a string, a kind nor a predicate.

    Example:
        >>> import torchvision, fxmaps
        >>> g = fxmaps.analyze(torchvision.models.resnet18())
        >>> [layer.name for layer in select_layers(g, ["layer4.1.conv*", "fc"])]
        ['layer4.1.conv1', 'layer4.1.conv2', 'fc']
    """
    if callable(layers) and not isinstance(layers, (str, Kind)):
        chosen = [layer for layer in graph.layers() if layers(layer)]
    else:
        items = [layers] if isinstance(layers, (str, Kind)) else list(layers)
        if not items:
            raise OptionError(
                f"layers={layers!r} selects nothing; pass a kind, node names or glob patterns. "
                f"The kinds {type(graph.model).__name__} has are: {_kinds_present(graph)}"
            )
        found: dict[str, Layer] = {}
        for item in items:
            for layer in _resolve(graph, item):
                found.setdefault(layer.name, layer)
        chosen = list(found.values())
    if not chosen:
        raise OptionError(
            f"layers={layers!r} selects no node of {type(graph.model).__name__}; "
            f"the kinds it has are: {_kinds_present(graph)}"
        )
    return chosen


def _kinds_present(graph: ModelGraph) -> str:
    """The model's kinds with their node counts: ``'activation (17), add (8), conv (17)'``."""
    counts: dict[str, int] = {}
    for layer in graph.layers():
        counts[layer.kind.value] = counts.get(layer.kind.value, 0) + 1
    return ", ".join(f"{kind} ({counts[kind]})" for kind in sorted(counts))


def _resolve(graph: ModelGraph, item: object) -> list[Layer]:
    if isinstance(item, Layer):
        return [graph.layer(item.name)]
    if isinstance(item, Kind) or item in _KINDS:
        return graph.layers(item)
    if not isinstance(item, str):
        raise InputError(
            f"layers entries must be kinds, node names, glob patterns or layers, got "
            f"{type(item).__name__} {item!r}"
        )
    if _GLOB & set(item):
        matches = [layer for layer in graph.layers() if fnmatch.fnmatchcase(layer.name, item)]
        if not matches:
            names = [layer.name for layer in graph.layers()]
            similar = close_matches(item.replace("*", "").replace("?", ""), names)
            hint = f"; names like it: {', '.join(map(repr, similar))}" if similar else ""
            raise NodeNotFoundError(f"pattern {item!r} matches no node{hint}")
        return matches
    return [graph.layer(item)]
