"""Choosing layers, one language everywhere: by kind, name, glob pattern, module, layer or
predicate.

A string that is a kind's value (``"conv"``, ``"add"``) selects that kind; a
string with ``*``, ``?`` or ``[`` is a glob pattern over node names
(``"layer3.*"``); ``"module:layer1"`` (``"module:layer1#1"`` for its second call)
or :class:`Module` selects what a module call returns, the way torchvision's
``IntermediateLayerGetter`` and timm's ``features_only`` name their outputs; any
other string is a node name, the name torchvision's convention gives a node (see
``Layer.alias``), or else a called module's path; a :class:`Layer` selects itself
(use it, or a predicate, for a node whose name is also a kind's). For maps
(:func:`require_layers`: ``extract``, ``FeatureExtractor``), kinds and patterns
leave out nodes whose output is an integer or boolean tensor (index buffers,
masks, token ids); name them to have them. Lists mix these freely. A dict
``{selection: new_name}`` selects its keys and names their maps by its values, as
``create_feature_extractor``'s ``return_nodes`` does. The result keeps the order
asked for, execution order within a kind or pattern, each node once.
``ModelGraph.layers(...)`` and ``extract(layers=...)`` both take it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from fxmaps.errors import InputError, NodeNotFoundError, OptionError, close_matches
from fxmaps.facts import Kind
from fxmaps.graph.layer import Layer

if TYPE_CHECKING:
    from fxmaps.graph.model_graph import ModelGraph

__all__ = [
    "Module",
    "Selection",
    "holds_floats",
    "module_layers",
    "renames",
    "require_layers",
    "select_layers",
]

_MODULE_PREFIX = "module:"


@dataclass(frozen=True)
class Module:
    """A module call as a selection: what the call of the module at ``path`` returns.

    For a leaf module (a conv, a norm) that is its own node; for a module fxmaps
    traced through (``layer1``, a timm stage) the node inside the call whose value
    the call returns. ``call`` counts the module's calls from 0 (a module called
    twice has calls 0 and 1). The string form is ``"module:layer1"`` or
    ``"module:layer1#1"``.

    Example:
        >>> import torchvision, fxmaps
        >>> g = fxmaps.analyze(torchvision.models.resnet18())
        >>> [layer.name for layer in g.layers(fxmaps.Module("layer1"))]
        ['layer1.1.relu_1']
        >>> [layer.name for layer in g.layers("module:layer2.0.downsample")]
        ['layer2.0.downsample.1']
    """

    path: str
    call: int = 0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.path, str)
            or isinstance(self.call, bool)
            or not (isinstance(self.call, int) and self.call >= 0)
        ):
            raise InputError(
                f"Module(path, call) takes a module path (str) and a call index >= 0, got "
                f"{self.path!r}, {self.call!r}",
                argument="Module",
                got=f"{type(self.path).__name__}, {type(self.call).__name__}",
            )

    @classmethod
    def parse(cls, text: str) -> Module:
        """``"module:layer1#1"`` -> ``Module("layer1", 1)``.

        Raises:
            InputError: The text after ``#`` is not a call index.
        """
        path, _, call = text.removeprefix(_MODULE_PREFIX).partition("#")
        if call and not call.isdigit():
            raise InputError(
                f"{text!r}: the call after '#' must be a number (module:layer1#1 is the "
                "second call of layer1)",
                argument="layers",
                got=text,
            )
        return cls(path, int(call or 0))

    def __str__(self) -> str:
        return f"{_MODULE_PREFIX}{self.path}" + (f"#{self.call}" if self.call else "")


Selection: TypeAlias = (
    "str | Kind | Module | Iterable[str | Kind | Layer | Module]"
    " | Mapping[str | Kind | Layer | Module, str] | Callable[[Layer], bool]"
)
"""A kind, a node name, a glob pattern, a module, a list of those or of layers, a dict
of those to new names, or a predicate."""

_KINDS = frozenset(kind.value for kind in Kind)
_GLOB = frozenset("*?[")


def select_layers(
    graph: ModelGraph, selection: Selection, *, floats_only: bool = False
) -> list[Layer]:
    """The layers of ``graph`` that ``selection`` chooses, in the order asked for (maybe none).

    With ``floats_only``, kinds and patterns leave out layers whose output is an integer
    or boolean tensor (names, modules, layers and predicates keep them).

    Raises:
        NodeNotFoundError: A name or pattern matches no node (close matches listed).
        InputError: An entry is neither a string, a kind, a layer nor a predicate.

    Example:
        >>> import torchvision, fxmaps
        >>> g = fxmaps.analyze(torchvision.models.resnet18())
        >>> [layer.name for layer in select_layers(g, ["layer4.1.conv*", "fc"])]
        ['layer4.1.conv1', 'layer4.1.conv2', 'fc']
    """
    if callable(selection) and not isinstance(selection, (str, Kind, Module)):
        return [layer for layer in graph.layers() if selection(layer)]
    found: dict[str, Layer] = {}
    for item in _items(selection):
        for layer in _resolve(graph, item, floats_only):
            found.setdefault(layer.name, layer)
    return list(found.values())


def renames(graph: ModelGraph, selection: Selection) -> list[tuple[str, str]] | None:
    """For a dict selection, ``(node name, new name)`` pairs in the order asked for;
    ``None`` for any other selection.

    Raises:
        OptionError: A key selects several nodes, a new name is not a string, or two
            keys get the same new name.
        NodeNotFoundError: As :func:`select_layers`.
    """
    if not isinstance(selection, Mapping):
        return None
    pairs: list[tuple[str, str]] = []
    for item, new in selection.items():
        chosen = _resolve(graph, item)
        if len(chosen) != 1 or not isinstance(new, str) or not new:
            what = (
                f"a non-empty string, got {type(new).__name__} {new!r}"
                if not isinstance(new, str) or not new
                else f"one node per key, and {item!r} selects {len(chosen)}"
            )
            raise OptionError(
                f"a renaming dict maps each node to a new name: {what}",
                option="layers",
                value=item,
                valid=("{node name, module path or Module: new name}",),
            )
        pairs.append((chosen[0].name, new))
    names = [new for _, new in pairs]
    doubled = sorted({new for new in names if names.count(new) > 1})
    if doubled:
        raise OptionError(
            f"a renaming dict gives two nodes the same name: {', '.join(map(repr, doubled))}",
            option="layers",
            value=doubled[0],
            valid=("distinct new names",),
        )
    return pairs


def _items(selection: Selection) -> list[object]:
    if isinstance(selection, (str, Kind, Module)):
        return [selection]
    if not isinstance(selection, Iterable):  # None, a number, ...: not a selection
        raise InputError(
            f"layers={selection!r} ({type(selection).__name__}) selects nothing: pass a kind "
            f"('conv'), node names or glob patterns ('layer1.*'), modules "
            f"(fxmaps.Module('layer1')), a list or a renaming dict of those, or a predicate",
            argument="layers",
            got=type(selection).__name__,
        )
    return list(selection)


def require_layers(graph: ModelGraph, selection: Selection) -> list[Layer]:
    """The layers whose maps ``selection`` asks for: :func:`select_layers` with
    ``floats_only`` (kinds and patterns leave integer and boolean outputs out), refusing
    a selection that chooses nothing.

    Raises:
        OptionError: The selection is empty, or chooses no node at all.
        NodeNotFoundError: As :func:`select_layers`.
        InputError: As :func:`select_layers`.
    """
    chosen = select_layers(graph, selection, floats_only=True)
    if chosen:
        return chosen
    integers = [layer.name for layer in select_layers(graph, selection)]
    if integers:
        raise OptionError(
            f"layers={selection!r} selects only nodes whose output is an integer or boolean "
            f"tensor ({', '.join(map(repr, integers[:5]))}{', ...' if len(integers) > 5 else ''})"
            ", which kinds and patterns leave out; name them to extract them",
            option="layers",
            value=selection,
            valid=tuple(integers[:5]),
        )
    empty = not callable(selection) and not isinstance(selection, (str, Kind, Module))
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


def holds_floats(layer: Layer) -> bool:
    """Whether the layer's output may be a float (or complex) tensor: not known to be an
    integer or boolean one."""
    return layer.dtype is None or layer.dtype.is_floating_point or layer.dtype.is_complex


def _resolve(graph: ModelGraph, item: object, floats_only: bool = False) -> list[Layer]:
    if isinstance(item, Layer):
        return [graph.layer(item.name)]
    if isinstance(item, Module):
        return module_layers(graph, item)
    if isinstance(item, Kind) or item in _KINDS:
        wanted = Kind(item)
        return [
            layer
            for layer in graph.layers()
            if layer.kind is wanted and (holds_floats(layer) or not floats_only)
        ]
    if not isinstance(item, str):
        raise InputError(
            f"layers entries must be kinds, node names, glob patterns or layers, got "
            f"{type(item).__name__} {item!r} (a module: fxmaps.Module or 'module:PATH')",
            argument="layers",
            got=type(item).__name__,
        )
    if item.startswith(_MODULE_PREFIX):
        return module_layers(graph, Module.parse(item))
    if _GLOB & set(item):
        return _matching(graph, item, floats_only)
    if item in graph:
        return [graph.layer(item)]
    if item in graph.aliases:
        return [graph.layer(graph.aliases[item])]
    if graph.module_calls(item):
        return module_layers(graph, Module(item))
    raise _unknown(graph, item)


def module_layers(graph: ModelGraph, wanted: Module) -> list[Layer]:
    """The layers a module call returns (several for a tuple), in execution order.

    Raises:
        NodeNotFoundError: The model has no such module, or the module has no such call
            in the graph (inside an opaque module, or not called).
    """
    if wanted.path == "":
        return [layer for layer in graph.layers() if layer.kind is Kind.OUTPUT]
    key = (wanted.path, wanted.call)
    found = [layer for layer in graph.layers() if key in layer.returned_by]
    if found:
        return found
    calls = graph.module_calls(wanted.path)
    paths = [path for path, _ in graph.model.named_modules() if path]
    if wanted.path not in paths:
        similar = close_matches(wanted.path, paths)
        hint = f"; did you mean {', '.join(map(repr, similar))}?" if similar else ""
        raise NodeNotFoundError(
            f"{type(graph.model).__name__} has no module {wanted.path!r}{hint}",
            name=str(wanted),
            candidates=tuple(similar),
        )
    if calls:
        why = f"it is called {calls} time{'s' if calls > 1 else ''} (calls 0 to {calls - 1})"
    else:
        opaque = [o.name for o in graph.opaque if wanted.path.startswith(f"{o.name}.")]
        why = (
            f"it runs inside {opaque[0]!r}, which the graph holds as one node"
            if opaque
            else "it is not called in the graph, or its call runs no op of its own (it "
            "returns its input as it is)"
        )
    raise NodeNotFoundError(
        f"module {wanted.path!r} of {type(graph.model).__name__} has no call {wanted.call} "
        f"in the graph: {why}",
        name=str(wanted),
    )


def _matching(graph: ModelGraph, pattern: str, floats_only: bool) -> list[Layer]:
    named = [layer for layer in graph.layers() if fnmatch.fnmatchcase(layer.name, pattern)]
    matches = [layer for layer in named if holds_floats(layer) or not floats_only]
    if not named:
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
