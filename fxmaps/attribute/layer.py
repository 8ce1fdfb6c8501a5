"""Which node a class activation map is taken at: the user's, or one found in the graph.

The default is the last node on the *main path* (a node every path from the inputs
to the output runs through: a dominator of the output; for a model that takes other
inputs besides the image, every path from the image) whose value still has a
spatial extent above 1x1 in ``(N, C, H, W)`` form, that is before global pooling
or the class token is taken. From there it steps back over nodes that only
normalise, reshape, drop out or pool without shrinking the grid, since those
neither mix positions nor add evidence. Where the class token is taken (``x[:, 0]``
after the last spatial node), it steps back further, to the tokens that enter the
last attention: after that attention only the class token reaches the output, so
every other token's gradient is zero and a map there is all zero (this is why
pytorch-grad-cam's users are told to hook ``blocks[-1].norm1``). So torchvision's
and timm's ViT and DeiT give the last block's input tokens, Swin the last stage's grid (not
the norm and permute after it), VGG the last max pool (not the 7x7 adaptive pool
that copies it), ResNet the last stage's output.

Models on sequences, audio or signals take ``(N, C, L)`` inputs; their maps are 1-d.
For them (``dims=1``) a node's positions are its length: ``(N, C, l)`` channels-first
(Conv1d), or channels-last tokens ``(N, l, C)`` (every token: a sequence has no grid, so
none is dropped). The same rules pick the last node on the main path whose length is
above 1, before global pooling; nodes of the other rank never count, so an image model's
choice is the same as before and a 1-d model's is a 1-d node.
"""

from __future__ import annotations

import math
import operator

import networkx as nx
from torch import fx

from fxmaps.errors import InputError, NodeNotFoundError
from fxmaps.facts import Kind, Layout, facts
from fxmaps.graph import Layer, ModelGraph

__all__ = ["default_layer", "grid_side", "input_dims", "layer_named", "sequence_length"]

_MAX_EXTRA_TOKENS = 8  # class and register tokens, as ``extract(spatial=True)`` drops them
_STEP_BACK = frozenset({Kind.NORM, Kind.RESHAPE, Kind.DROPOUT})


def grid_side(shape: object, layout: Layout) -> tuple[int, int] | None:
    """The ``(H, W)`` a value of ``shape`` has as ``(N, C, H, W)``, or ``None`` if it has none.

    Channels-first ``(N, C, H, W)``; channels-last grids ``(N, H, W, C)``; tokens
    ``(N, L, C)`` whose ``L`` less at most eight leading tokens is a square.
    """
    if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
        return None
    if len(shape) == 4 and layout is Layout.CHANNELS_FIRST:
        return shape[2], shape[3]
    if len(shape) == 4 and layout is Layout.CHANNELS_LAST:
        return shape[1], shape[2]
    if len(shape) == 3 and layout is Layout.CHANNELS_LAST:
        tokens = shape[1]
        for extra in range(min(_MAX_EXTRA_TOKENS, tokens - 1) + 1):
            side = math.isqrt(tokens - extra)
            if side * side == tokens - extra:
                return side, side
    return None


def sequence_length(shape: object, layout: Layout) -> int | None:
    """The length ``l`` a value of ``shape`` has as ``(N, C, l)``, or ``None`` if it has none.

    Channels-first ``(N, C, l)`` (Conv1d); channels-last tokens ``(N, l, C)``.
    """
    if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
        return None
    if len(shape) != 3 or layout is Layout.UNKNOWN:
        return None
    length: int = shape[2] if layout is Layout.CHANNELS_FIRST else shape[1]
    return length


def input_dims(graph: ModelGraph) -> int:
    """The spatial rank maps are drawn at: 2 where an input is ``(N, C, H, W)``, else 1
    where one is ``(N, C, L)``, else 2 (``cam`` itself refuses inputs of neither form)."""
    ranks = {len(s) for s in map(_shape, _inputs(graph)) if s is not None}
    return 1 if 4 not in ranks and 3 in ranks else 2


def _inputs(graph: ModelGraph) -> list[fx.Node]:
    nodes = graph.graph_module.graph.nodes
    return [n for n in nodes if n.op == "placeholder" and not facts(n).hidden]


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    shape = facts(node).shape
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return tuple(int(d) for d in shape if isinstance(d, int))
    return None


def _image_input(graph: ModelGraph, dims: int) -> fx.Node | None:
    """The input the maps are drawn on, where the model takes others too: the first of
    rank ``dims + 2`` (``None`` for a model of one input, or none of that rank)."""
    inputs = _inputs(graph)
    found = [n for n in inputs if (s := _shape(n)) is not None and len(s) == dims + 2]
    return found[0] if len(inputs) > 1 and found else None


def _extent(node: fx.Node, dims: int) -> int:
    """How many positions ``node``'s value has at spatial rank ``dims`` (0: none)."""
    shape, layout = facts(node).shape, facts(node).layout
    if dims == 1:
        return sequence_length(shape, layout) or 0
    side = grid_side(shape, layout)
    return 0 if side is None else side[0] * side[1]


def main_path(module: fx.GraphModule, start: fx.Node | None = None) -> list[fx.Node]:
    """The nodes every path from the inputs (from ``start`` alone, when given: the image
    of a model with other inputs too) to the output runs through, output first."""
    graph: nx.DiGraph[object] = nx.DiGraph()
    source = object()
    output: fx.Node | None = None
    for node in module.graph.nodes:
        visible = node.op == "placeholder" and not facts(node).hidden
        if visible and (start is None or node is start):
            graph.add_edge(source, node)
        if node.op == "output":
            output = node
        for user in node.users:
            graph.add_edge(node, user)
    if output is None or output not in graph or not nx.has_path(graph, source, output):
        return []
    dominators = nx.immediate_dominators(graph, source)
    path: list[fx.Node] = []
    current: object = output
    while current is not source:
        assert isinstance(current, fx.Node)
        path.append(current)
        current = dominators[current]
    return path


def default_layer(graph: ModelGraph, *, dims: int | None = None) -> Layer:
    """The node the maps are taken at when no layer is given (see the module's docstring).

    Args:
        graph: The analysed model (with shapes).
        dims: The maps' spatial rank: 2 for images, 1 for ``(N, C, L)`` signals;
            ``None`` reads it from the graph's inputs (:func:`input_dims`).

    Raises:
        InputError: No node on the main path has a spatial extent above 1x1 (a
            length above 1 for ``dims=1``).
    """
    dims = input_dims(graph) if dims is None else dims
    path = main_path(graph.graph_module, _image_input(graph, dims))
    for i, node in enumerate(path):
        if node.op != "placeholder" and _extent(node, dims) > 1:  # a layer's, not the input's
            if i and _takes_tokens(path[i - 1]):
                i = _before_attention(path, i)
            return graph.layer(facts(_stepped_back(path[i:], dims)).name)
    if dims == 1:
        raise InputError(
            "cam() found no layer with a length above 1 on the model's main path after its "
            "(N, C, L) input (1-d maps need a sequence of positions); give a longer input, "
            "or name a node with layer=...",
            argument="layer",
            got="None",
        )
    raise InputError(
        "cam() found no layer with a spatial layout larger than 1x1 on the model's main path "
        "after its input (the maps need a grid of positions); give an input with a larger "
        "height and width, or name a node with layer=...",
        argument="layer",
        got="None",
    )


def _takes_tokens(node: fx.Node) -> bool:
    """Whether ``node`` picks some tokens out of a sequence (``x[:, 0]``: the class token).

    A symbolic trace records indexing as ``operator.getitem``; a captured model's Python
    code as the tensor method ``__getitem__``.
    """
    if node.op == "call_method":
        return node.target == "__getitem__"
    return node.op == "call_function" and node.target is operator.getitem


def _before_attention(path: list[fx.Node], start: int) -> int:
    """The index in ``path`` of the node that enters the last attention before
    ``path[start]``; ``start`` itself when no attention comes before it."""
    for j in range(start, len(path) - 1):
        if any(facts(n).kind is Kind.ATTENTION for n in _between(path[j + 1], path[j])):
            return j + 1
    return start


def _between(first: fx.Node, last: fx.Node) -> set[fx.Node]:
    """The nodes on paths from ``first`` to ``last`` (both excluded)."""
    found: set[fx.Node] = set()
    stack = list(last.all_input_nodes)
    while stack:
        current = stack.pop()
        if current is not first and current not in found and current.op != "placeholder":
            found.add(current)
            stack.extend(current.all_input_nodes)
    return found


def _stepped_back(path: list[fx.Node], dims: int) -> fx.Node:
    """From ``path[0]``, back over nodes that neither mix positions nor shrink the grid."""
    chosen = path[0]
    for before in path[1:]:
        if not _passes_through(chosen, before, dims) or _extent(before, dims) <= 1:
            break
        if before.op == "placeholder":  # back to the input itself: no layer's map
            break
        chosen = before
    return chosen


def _passes_through(node: fx.Node, before: fx.Node, dims: int) -> bool:
    kind = facts(node).kind
    if kind in _STEP_BACK:
        return True
    return kind is Kind.POOL and _extent(node, dims) >= _extent(before, dims)


def layer_named(graph: ModelGraph, name: str, *, dims: int = 2) -> Layer:
    """The layer ``name`` (or what the call ``"module:path"`` returns), checked to have a
    spatial extent above 1x1 (a length above 1 for ``dims=1``).

    Raises:
        InputError: No node has that name (close matches listed), or its value has no
            grid of positions.
    """
    try:
        found = graph.layers(name) if name.startswith("module:") else [graph.layer(name)]
        layer = found[-1]
    except (NodeNotFoundError, IndexError) as err:
        candidates = err.candidates if isinstance(err, NodeNotFoundError) else ()
        close = ", ".join(repr(c) for c in candidates) or "none close"
        raise InputError(
            f"layer={name!r} is not a node of the model (close names: {close}); use a name "
            "from fxmaps.analyze(model).layers(), or layer=None to let fxmaps choose",
            argument="layer",
            got=str(name),
        ) from err
    node = graph.fx_node(layer.name)
    if dims == 1 and _extent(node, dims) <= 1:
        raise InputError(
            f"layer={name!r} gives {facts(node).shape} ({facts(node).layout}): no sequence "
            "longer than 1 to draw a 1-d map on ((N, C, l) or tokens (N, l, C)); choose a "
            "node before global pooling, or layer=None to let fxmaps choose",
            argument="layer",
            got=str(name),
        )
    if _extent(node, dims) <= 1:
        shape = facts(node).shape
        raise InputError(
            f"layer={name!r} gives {shape} ({facts(node).layout}): no spatial grid larger "
            "than 1x1 to draw a map on; choose a node before global pooling or the class "
            "token, or layer=None to let fxmaps choose",
            argument="layer",
            got=str(name),
        )
    return layer
