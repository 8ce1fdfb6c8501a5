"""Plan a graph diagram: the nodes, clusters and edges that :func:`~fxmaps.render_graph` draws.

This is bookkeeping on a :class:`~fxmaps.ModelGraph` and needs no graphviz; the
drawing module turns a :class:`GraphPlan` into a ``graphviz.Digraph``. Planning:

1. hides dead ends: side nodes whose values reach no output (shape asserts,
   the unused attention weights of ``nn.MultiheadAttention``), unless highlighted;
2. maps each layer to the key of the node that shows it (``collapse``) and folds
   parameter nodes (``get_attr``) into the node that uses them;
3. finds each node's innermost cluster and each cluster's child clusters;
4. keeps one edge per pair of drawn nodes, with the strongest role among those merged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fxmaps.classify import Block, BlockKind, Kind
from fxmaps.classify.blocks import ROLE_SHORTCUT, ROLE_SKIP
from fxmaps.errors import OptionError
from fxmaps.facts import facts
from fxmaps.graph import Layer, ModelGraph, format_shape
from fxmaps.graph.model_graph import ATTR_ROLE, ROLE_DATA

if TYPE_CHECKING:
    from torch import fx

__all__ = ["DrawnNode", "GraphPlan", "Highlight", "check_collapse", "plan_graph"]

Highlight = Iterable[str] | Callable[[Layer], bool] | None
"""Node names, or a predicate on layers, to outline."""

_ROLE_RANK = {ROLE_DATA: 0, ROLE_SHORTCUT: 1, ROLE_SKIP: 2}  # a merged edge keeps the lowest
# Kinds a dead end may have and still be hidden: a dead conv or linear is worth seeing.
_HIDEABLE = frozenset({Kind.OTHER, Kind.PARAMETER})


@dataclass(frozen=True)
class DrawnNode:
    """One drawn node: a layer, or a group of layers collapsed into one."""

    key: str
    layers: tuple[Layer, ...]
    group: str | None  # "residual", "sequential" or "module" for a group
    module_type: str
    shapes: str  # the output shape, or "in → out" for a group
    parameters: tuple[str, ...] = ()  # parameter nodes it uses, not drawn on their own
    repeats: tuple[str, ...] = ()  # collapse="repeats": the keys of the identical blocks folded

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The names of the layers it shows."""
        return frozenset(layer.name for layer in self.layers)

    @property
    def has_downsample(self) -> bool:
        """Whether it is a group that holds a downsample (projection shortcut) layer."""
        return self.group is not None and any(x.kind is Kind.DOWNSAMPLE for x in self.layers)


@dataclass(frozen=True)
class GraphPlan:
    """What to draw where."""

    nodes: dict[str, DrawnNode]  # node key -> node, in execution order
    edges: dict[tuple[str, str], str]  # (tail key, head key) -> edge role
    homes: dict[str, str | None]  # node key -> innermost drawn cluster (block name)
    children: dict[str | None, list[Block]]  # cluster (None: the top) -> clusters inside it
    marked: frozenset[str]  # highlighted node keys
    hidden: tuple[str, ...]  # dead-end layers not drawn
    arithmetic: tuple[str, ...] = ()  # shape computations not drawn in a collapsed view

    @functools.cached_property
    def residents(self) -> dict[str | None, list[str]]:
        """Cluster (None: the top) -> the keys of the nodes directly in it, in order."""
        residents: dict[str | None, list[str]] = {}
        for key, home in self.homes.items():
            residents.setdefault(home, []).append(key)
        return residents


def check_collapse(collapse: str | int) -> None:
    """Raise :class:`OptionError` unless ``collapse`` is ``'none'``, ``'blocks'``,
    ``'repeats'`` or a depth."""
    depth_ok = isinstance(collapse, int) and not isinstance(collapse, bool) and collapse >= 1
    if collapse not in ("none", "blocks", "repeats") and not depth_ok:
        raise OptionError(
            f"collapse={collapse!r} is not valid; use 'none', 'blocks' or 'repeats', or a "
            "module depth (an int >= 1, e.g. collapse=1 for top-level modules)",
            option="collapse",
            value=collapse,
            valid=("none", "blocks", "repeats", "a module depth >= 1"),
        )


def plan_graph(graph: ModelGraph, collapse: str | int, highlight: Highlight) -> GraphPlan:
    """Plan the diagram of ``graph``; see :func:`~fxmaps.render_graph` for the options.

    Raises:
        OptionError: ``collapse`` has no valid value.
        NodeNotFoundError: A name in ``highlight`` is not in the graph.
    """
    check_collapse(collapse)
    highlighted = _highlighted(graph, highlight)
    hidden = _dead_ends(graph, keep=set(highlighted))
    keys, nodes = _display(graph, "blocks" if collapse == "repeats" else collapse, set(hidden))
    arithmetic: tuple[str, ...] = ()
    if collapse != "none":
        arithmetic = _drop_arithmetic(graph, keys, nodes, keep=set(highlighted))
    if collapse == "repeats":
        _fold_repeats(graph, keys, nodes)
    homes, children = _clusters(graph.blocks(), keys, nodes)
    marked = frozenset(keys[name] for name in highlighted)
    edges = _edges(graph, keys, nodes)
    return GraphPlan(nodes, edges, homes, children, marked, hidden, arithmetic)


_SHAPE_METHODS = frozenset({"size", "dim", "ndimension", "numel", "nelement", "get_device"})
_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "is_cuda"})


def _drop_arithmetic(
    graph: ModelGraph, keys: dict[str, str], nodes: dict[str, DrawnNode], keep: set[str]
) -> tuple[str, ...]:
    """Take the shape computations drawn as nodes of their own out of ``keys`` and ``nodes``.

    A shape computation reads a tensor's shape (``x.shape``, ``x.size(0)``, ``x.dim()``,
    ``len(x)``) or computes only from such values (``getitem``, ``floordiv``, ``mul``, ...);
    the ``reshape`` or ``view`` it feeds stays. Returns the names taken out.
    """
    found: set[str] = set()
    for layer in graph.layers(Kind.OTHER):
        node = graph.fx_node(layer.name)
        inputs = [facts(n).name for n in node.all_input_nodes]
        if _reads_shape(node) or (inputs and all(name in found for name in inputs)):
            found.add(layer.name)
    dropped = [
        name for name in found
        if name not in keep and keys.get(name) == name and name in nodes
        and nodes[name].group is None
    ]  # fmt: skip
    for name in dropped:
        del keys[name], nodes[name]
    return tuple(layer.name for layer in graph.layers() if layer.name in set(dropped))


def _reads_shape(node: fx.Node) -> bool:
    """``x.size()``, ``x.dim()``, ``x.shape``, ``len(x)``, ...: a node that reads a shape."""
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    if node.op != "call_function":
        return False
    if node.target is len:
        return True
    return node.target is getattr and len(node.args) > 1 and node.args[1] in _SHAPE_ATTRIBUTES


def _fold_repeats(graph: ModelGraph, keys: dict[str, str], nodes: dict[str, DrawnNode]) -> None:
    """Fold each run of two or more identical collapsed blocks, one feeding the next, into
    its first node (``repeats`` names them all). Identical: the same kind and type of block,
    the same kinds and types of layers in the same order, the same shapes in and out."""
    edges = _edges(graph, keys, nodes)
    order = list(nodes)
    runs: list[list[str]] = []
    for key in order:
        last = runs[-1][-1] if runs else None
        if last is not None and (last, key) in edges and _same(nodes[last], nodes[key]):
            runs[-1].append(key)
        else:
            runs.append([key])
    for run in runs:
        if len(run) < 2 or nodes[run[0]].group is None:
            continue
        first, members = nodes[run[0]], [nodes.pop(key) for key in run[1:]]
        layers = first.layers + tuple(layer for node in members for layer in node.layers)
        for layer in layers:
            keys[layer.name] = first.key
        nodes[first.key] = replace(
            first,
            layers=layers,
            shapes=_shape_change(graph, list(layers), keys),
            parameters=first.parameters + tuple(p for node in members for p in node.parameters),
            repeats=tuple(run),
        )
    for key in [key for key in order if key in nodes]:  # keep execution order
        nodes[key] = nodes.pop(key)


def _same(one: DrawnNode, other: DrawnNode) -> bool:
    def signature(node: DrawnNode) -> tuple[object, ...]:
        layers = tuple((layer.kind, layer.module_type, layer.params) for layer in node.layers)
        return node.group, node.module_type, node.shapes, layers

    return one.group is not None and signature(one) == signature(other)


def _highlighted(graph: ModelGraph, highlight: Highlight) -> list[str]:
    if highlight is None:
        return []
    if callable(highlight):
        return [layer.name for layer in graph.layers() if highlight(layer)]
    names = [highlight] if isinstance(highlight, str) else list(highlight)
    return [graph.layer(name).name for name in names]  # an unknown name raises


def _dead_ends(graph: ModelGraph, keep: set[str]) -> tuple[str, ...]:
    """Hideable layers, not in ``keep``, whose successors are all hidden too (outputs never are).

    Walking backwards in execution order sees every successor before its source.
    """
    hidden: set[str] = set()
    for layer in reversed(graph.layers()):
        successors = graph.nx.successors(layer.name)
        if layer.kind in _HIDEABLE and layer.name not in keep and set(successors) <= hidden:
            hidden.add(layer.name)
    return tuple(layer.name for layer in graph.layers() if layer.name in hidden)


def _display(
    graph: ModelGraph, collapse: str | int, hidden: set[str]
) -> tuple[dict[str, str], dict[str, DrawnNode]]:
    """Each shown layer's node key, and the nodes to draw in execution order."""
    shown = [layer for layer in graph.layers() if layer.name not in hidden]
    keys, groups = _keys(graph, shown, collapse)
    folded = _fold_parameters(graph, keys)
    folded_names = {name for names in folded.values() for name in names}
    members: dict[str, list[Layer]] = {}
    for layer in shown:
        if layer.name not in folded_names:
            members.setdefault(keys[layer.name], []).append(layer)
    nodes = {}
    for key, layers in members.items():
        single = len(layers) == 1 and layers[0].name == key
        group, module_type = (None, layers[0].module_type) if single else groups[key]
        shapes = format_shape(layers[0].out_shape) if single else _shape_change(graph, layers, keys)
        parameters = tuple(folded.get(key, ()))
        nodes[key] = DrawnNode(key, tuple(layers), group, module_type, shapes, parameters)
    return keys, nodes


def _keys(
    graph: ModelGraph, shown: list[Layer], collapse: str | int
) -> tuple[dict[str, str], dict[str, tuple[str | None, str]]]:
    """Each shown layer's node key, and each group key's kind and module type."""
    keys = {layer.name: layer.name for layer in shown}
    if collapse == "blocks":
        blocks = _collapsed_blocks(graph.blocks())
        keys.update((name, block.name) for block in blocks for name in block.layers if name in keys)
        return keys, {block.name: (str(block.kind), block.module_type) for block in blocks}
    if isinstance(collapse, int):
        keys = {name: ".".join(name.split(".")[:collapse]) for name in keys}
        return keys, {key: ("module", _module_type(graph, key)) for key in set(keys.values())}
    return keys, {}


def _collapsed_blocks(blocks: list[Block]) -> list[Block]:
    """The outermost blocks that are residual or hold no residual block."""
    by_name = {block.name: block for block in blocks}
    holds_residual = set()
    for block in blocks:
        parent = block.parent if block.kind is BlockKind.RESIDUAL else None
        while parent is not None:
            holds_residual.add(parent)
            parent = by_name[parent].parent
    chosen: list[Block] = []
    covered: set[str] = set()
    for block in blocks:  # outer blocks come before inner ones
        if block.parent in covered:
            covered.add(block.name)
        elif block.kind is BlockKind.RESIDUAL or block.name not in holds_residual:
            chosen.append(block)
            covered.add(block.name)
    return chosen


def _module_type(graph: ModelGraph, name: str) -> str:
    try:
        return type(graph.model.get_submodule(name)).__name__
    except AttributeError:
        return ""


def _fold_parameters(graph: ModelGraph, keys: dict[str, str]) -> dict[str, list[str]]:
    """Point each parameter layer that is not in a group at its first shown user's node.

    Updates ``keys`` and returns node key -> the parameter layers folded into it.
    """
    folded: dict[str, list[str]] = {}
    for layer in graph.layers(Kind.PARAMETER):
        users = [user for user in graph.nx.successors(layer.name) if user in keys]
        if users and keys.get(layer.name) == layer.name:
            keys[layer.name] = keys[users[0]]
            folded.setdefault(keys[layer.name], []).append(layer.name)
    return folded


def _shape_change(graph: ModelGraph, layers: list[Layer], keys: dict[str, str]) -> str:
    """``'in → out'``: the shapes entering and leaving a group of shown layers, where known."""
    order = [layer.name for layer in layers]
    inside = set(order)

    def outside(name: str) -> bool:
        return name in keys and name not in inside

    entering = [p for m in order for p in graph.nx.predecessors(m) if outside(p)]
    leaving = [m for m in order if any(outside(s) for s in graph.nx.successors(m))]
    ins, outs = (
        {format_shape(graph[n].out_shape): 0 for n in group} for group in (entering, leaving)
    )
    ins.pop("", None)
    outs.pop("", None)
    if not outs:
        return ""
    return f"{', '.join(ins)} → {', '.join(outs)}" if ins else ", ".join(outs)


def _clusters(
    blocks: list[Block], keys: dict[str, str], nodes: dict[str, DrawnNode]
) -> tuple[dict[str, str | None], dict[str | None, list[Block]]]:
    """Each node's innermost drawn cluster, and each cluster's drawn child clusters.

    A block is a cluster when it shows some node, every node it shows lies
    wholly inside it, and it does not show as one collapsed node.
    """
    by_name = {block.name: block for block in blocks}
    drawn: set[str] = set()
    for block in blocks:
        shown_keys = dict.fromkeys(keys[name] for name in block.layers if name in keys)
        shown = [nodes[key] for key in shown_keys]
        collapsed = len(shown) == 1 and shown[0].group is not None
        inside = set(block.layers)
        if shown and not collapsed and all(node.names <= inside for node in shown):
            drawn.add(block.name)

    def nearest(name: str | None) -> str | None:
        while name is not None and name not in drawn:
            name = by_name[name].parent
        return name

    homes = {key: nearest(node.layers[0].block) for key, node in nodes.items()}
    children: dict[str | None, list[Block]] = {}
    for block in blocks:
        if block.name in drawn:
            children.setdefault(nearest(block.parent), []).append(block)
    return homes, children


def _edges(
    graph: ModelGraph, keys: dict[str, str], nodes: dict[str, DrawnNode]
) -> dict[tuple[str, str], str]:
    """Edges between drawn nodes, one per pair; a merged edge keeps its strongest role."""
    roles: dict[tuple[str, str], str] = {}
    for source, target, data in graph.nx.edges(data=True):
        if source not in keys or target not in keys:  # a hidden dead end
            continue
        pair = (keys[source], keys[target])
        if pair[0] == pair[1] or source not in nodes[pair[0]].names:  # or a folded parameter
            continue
        role = data.get(ATTR_ROLE, ROLE_DATA)
        role = role if role in _ROLE_RANK else ROLE_DATA
        if pair not in roles or _ROLE_RANK[role] < _ROLE_RANK[roles[pair]]:
            roles[pair] = role
    return roles
