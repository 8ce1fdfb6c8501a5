"""Draw a :class:`~fxmaps.ModelGraph` as a graphviz diagram.

Nodes are coloured and shaped by :class:`~fxmaps.Kind`, with a legend of what is
present; residual and sequential blocks become nested clusters; identity skips
(dashed blue) and projection shortcuts (bold orange) stand apart from the data
path. ``collapse`` trades detail for size. Parameter nodes (``get_attr``: ViT's
class token, Swin's bias tables) are not drawn on their own: the node that uses
one names it on its last line.

``graphviz`` is imported inside the functions, so ``import fxmaps`` stays light.
"""

from __future__ import annotations

import functools
import html
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fxmaps._files import atomic_path, output_file
from fxmaps.classify import Block, BlockKind, Kind
from fxmaps.classify.blocks import ROLE_SHORTCUT, ROLE_SKIP
from fxmaps.errors import GraphvizNotFoundError, OptionError
from fxmaps.graph import ATTR_ROLE, ROLE_DATA, Layer, ModelGraph, format_shape

if TYPE_CHECKING:
    import graphviz

__all__ = ["KIND_COLORS", "render_graph", "save_graph"]

# fmt: off
KIND_COLORS = MappingProxyType({
    Kind.CONV: "#9ecae1", Kind.DOWNSAMPLE: "#fdae6b", Kind.LINEAR: "#a1d99b",
    Kind.NORM: "#e3e3e3", Kind.ACTIVATION: "#fff1a8", Kind.POOL: "#c9b8e3",
    Kind.ADD: "#f4a5a5", Kind.CONCAT: "#f6c2de", Kind.RESHAPE: "#f7f7f7",
    Kind.ATTENTION: "#7fcdbb", Kind.DROPOUT: "#ffffff", Kind.UPSAMPLE: "#c7e9c0",
    Kind.EMBEDDING: "#d9c6a5", Kind.RECURRENT: "#8dd3c7", Kind.PARAMETER: "#fffbe0",
    Kind.INPUT: "#cfcfcf", Kind.OUTPUT: "#cfcfcf", Kind.OTHER: "#ffffff",
})
# fmt: on
"""Fill colour of each kind's nodes (read-only)."""

_SHAPES = {Kind.ADD: "oval", Kind.CONCAT: "oval", Kind.INPUT: "invhouse", Kind.OUTPUT: "house"}
_SMALL = frozenset({Kind.OTHER, Kind.DROPOUT, Kind.PARAMETER})  # shape checks, getitem, ...
_GROUP_COLORS = {"residual": "#fdd0a2", "sequential": "#c6dbef", "module": "#d9d9d9"}
_CLUSTER_STYLE = {
    BlockKind.RESIDUAL: {"pencolor": "#e6550d", "fillcolor": "#fff5eb"},
    BlockKind.SEQUENTIAL: {"pencolor": "#6baed6", "fillcolor": "#f3f8fd"},
}
_EDGE_STYLE = {
    ROLE_DATA: {},
    ROLE_SKIP: {"style": "dashed", "color": "#3182bd", "penwidth": "1.5", "tooltip": "skip"},
    ROLE_SHORTCUT: {"color": "#e6550d", "penwidth": "2.2", "tooltip": "shortcut"},
}
_EDGE_LEGEND = {ROLE_SKIP: ("- - ▶", "skip (identity)"), ROLE_SHORTCUT: ("━━▶", "shortcut")}
_ROLE_RANK = {ROLE_DATA: 0, ROLE_SHORTCUT: 1, ROLE_SKIP: 2}  # a merged edge keeps the lowest
_HIGHLIGHT = {"color": "#d7191c", "penwidth": "3"}
_RANKDIRS = ("TB", "LR", "BT", "RL")
# The legend is the graph's label (top right), so it takes no rank beside the nodes.
_GRAPH_ATTRS = {"nodesep": "0.25", "ranksep": "0.3", "fontname": "Helvetica", "fontsize": "11"}
_GRAPH_ATTRS.update(labelloc="t", labeljust="r")
# Densely wired graphs (DenseNet's concats) have thousands of long edges: bound dot's
# crossing minimisation and network simplex, or it runs for many minutes.
_DENSE = {"mclimit": "0.1", "nslimit": "1"}
_NODE_ATTRS = {"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"}
_EDGE_ATTRS = {"color": "#555555", "arrowsize": "0.6"}
_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": None, ".gv": None}
_INSTALL_HINT = (
    "Graphviz's `dot` program, which draws the diagram, was not found on PATH (the `graphviz` "
    "Python package only talks to it). Install Graphviz: `apt-get install graphviz` on "
    "Debian/Ubuntu, `brew install graphviz` on macOS, `conda install graphviz`, or see "
    "https://graphviz.org/download/. The DOT text needs no install: `dot.source`, or "
    "save_graph(dot, 'model.dot')."
)


@dataclass(frozen=True)
class _Node:
    """One drawn node: a layer, or a group of layers collapsed into one."""

    key: str
    layers: tuple[Layer, ...]
    group: str | None  # "residual", "sequential" or "module" for a group
    module_type: str
    shapes: str  # the output shape, or "in → out" for a group
    parameters: tuple[str, ...] = ()  # parameter nodes it uses, not drawn on their own

    @functools.cached_property
    def names(self) -> frozenset[str]:
        return frozenset(layer.name for layer in self.layers)


@dataclass(frozen=True)
class _Plan:
    """What to draw where: nodes, their clusters, the highlighted node keys."""

    nodes: dict[str, _Node]
    homes: dict[str, str | None]  # node key -> innermost drawn cluster (block name)
    children: dict[str | None, list[Block]]  # cluster -> drawn clusters inside it
    marked: frozenset[str]
    show_shapes: bool


def render_graph(
    graph: ModelGraph,
    *,
    collapse: str | int = "none",
    show_shapes: bool = True,
    rankdir: str = "TB",
    highlight: Iterable[str] | Callable[[Layer], bool] | None = None,
) -> graphviz.Digraph:
    """Draw the graph's nodes, coloured by kind, with its blocks as clusters.

    Args:
        graph: The analysed model (from :func:`fxmaps.analyze`).
        collapse: ``"none"`` draws every node inside nested block clusters.
            ``"blocks"`` draws as one node each residual block, and each block
            that holds no residual block, outermost first: a ResNet bottleneck,
            an EfficientNet MBConv or a ViT encoder layer becomes one node, and
            stage containers stay as clusters around them. An integer ``depth``
            merges every node whose name has more than ``depth`` dot-separated
            parts into its ancestor module at that depth.
        show_shapes: Write output shapes (known when the graph was analysed
            with an example input); a collapsed node shows ``in → out``.
        rankdir: Layout direction: ``"TB"``, ``"LR"``, ``"BT"`` or ``"RL"``.
        highlight: Node names, or a predicate on layers, to outline in red. A
            collapsed node is outlined when one of its layers is.

    Returns:
        A ``graphviz.Digraph`` that shows itself as SVG in Jupyter and whose
        rendering explains how to install Graphviz when ``dot`` is missing.
        ``dot.source`` is the DOT text; :func:`save_graph` writes files.

    Raises:
        OptionError: ``collapse`` or ``rankdir`` has no valid value.
        NodeNotFoundError: A name in ``highlight`` is not in the graph.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import fxmaps
        >>> from fxmaps.render.graph import render_graph
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
        >>> dot = render_graph(fxmaps.analyze(model, torch.zeros(1, 3, 8, 8)), highlight=["0"])
        >>> "1×8×6×6" in dot.source
        True
    """
    _check_options(collapse, rankdir)
    keys, nodes = _display(graph, collapse)
    marked = frozenset(keys[name] for name in _highlighted(graph, highlight))
    roles = _edges(graph, keys, nodes)
    legend = _legend(nodes.values(), set(roles.values()), bool(marked))
    dense = _DENSE if len(roles) > 1.5 * len(nodes) else {}
    dot = _diagram_class()(
        name=type(graph.model).__name__,
        graph_attr={**_GRAPH_ATTRS, **dense, "rankdir": rankdir, "label": legend},
        node_attr=_NODE_ATTRS,
        edge_attr=_EDGE_ATTRS,
    )
    homes, children = _clusters(graph.blocks(), keys, nodes)
    _fill(dot, _Plan(nodes, homes, children, marked, show_shapes), None)
    for (tail, head), role in roles.items():
        dot.edge(tail, head, **_EDGE_STYLE[role])
    return dot


def save_graph(dot: graphviz.Digraph, path: str | os.PathLike[str]) -> Path:
    """Write the diagram to ``path``; its suffix picks the format.

    ``.svg``, ``.png`` and ``.pdf`` run Graphviz's ``dot``; ``.dot`` and ``.gv``
    write the DOT text and need no Graphviz install. The file appears whole or
    not at all (written beside it, then renamed).

    Raises:
        OptionError: The suffix is not one of ``.svg .png .pdf .dot .gv``.
        OutputError: The folder does not exist or is not writable.
        GraphvizNotFoundError: ``dot`` is not installed (image formats only).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from torch import nn
        >>> import fxmaps
        >>> from fxmaps.render.graph import render_graph, save_graph
        >>> dot = render_graph(fxmaps.analyze(nn.Sequential(nn.Conv2d(3, 8, 3))))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_graph(dot, Path(folder) / "model.dot").read_text().startswith("digraph")
        True
    """
    target = Path(path)
    if target.suffix.lower() not in _FORMATS:
        valid = " ".join(_FORMATS)
        raise OptionError(f"cannot tell the format of {str(target)!r}; use a suffix of: {valid}")
    fmt = _FORMATS[target.suffix.lower()]
    output_file(target)
    if fmt is None:
        data = dot.source.encode(dot.encoding or "utf-8")
    else:
        with _dot_program():
            data = dot.pipe(format=fmt)
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    return target


# -- what to draw ----------------------------------------------------------------------------


def _check_options(collapse: str | int, rankdir: str) -> None:
    depth_ok = isinstance(collapse, int) and not isinstance(collapse, bool) and collapse >= 1
    if collapse not in ("none", "blocks") and not depth_ok:
        raise OptionError(
            f"collapse={collapse!r} is not valid; use 'none', 'blocks' or a module depth "
            "(an int >= 1, e.g. collapse=1 for top-level modules)"
        )
    if rankdir not in _RANKDIRS:
        raise OptionError(f"rankdir={rankdir!r} is not valid; use one of {', '.join(_RANKDIRS)}")


def _display(graph: ModelGraph, collapse: str | int) -> tuple[dict[str, str], dict[str, _Node]]:
    """Each layer's node key, and the nodes to draw in execution order."""
    keys, groups = _keys(graph, collapse)
    folded: dict[str, list[str]] = {}  # node key -> parameter nodes folded into it
    for layer in graph.layers(Kind.PARAMETER):
        users = list(graph.nx.successors(layer.name))
        if users and keys[layer.name] == layer.name:  # a parameter not collapsed into a group
            keys[layer.name] = keys[users[0]]
            folded.setdefault(keys[layer.name], []).append(layer.name)
    hidden = {name for names in folded.values() for name in names}
    members: dict[str, list[Layer]] = {}
    for layer in graph.layers():
        if layer.name not in hidden:
            members.setdefault(keys[layer.name], []).append(layer)
    nodes = {}
    for key, layers in members.items():
        single = len(layers) == 1 and layers[0].name == key
        group, module_type = (None, layers[0].module_type) if single else groups[key]
        shapes = format_shape(layers[0].out_shape) if single else _shape_change(graph, layers)
        parameters = tuple(folded.get(key, ()))
        nodes[key] = _Node(key, tuple(layers), group, module_type, shapes, parameters)
    return keys, nodes


def _keys(
    graph: ModelGraph, collapse: str | int
) -> tuple[dict[str, str], dict[str, tuple[str | None, str]]]:
    """Each layer's node key, and each group key's kind and module type."""
    keys = {layer.name: layer.name for layer in graph.layers()}
    if collapse == "blocks":
        blocks = _collapsed_blocks(graph.blocks())
        keys.update((name, block.name) for block in blocks for name in block.layers)
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


def _shape_change(graph: ModelGraph, layers: list[Layer]) -> str:
    """``'in → out'``: the shapes entering and leaving a group of layers, where known."""
    order = [layer.name for layer in layers]
    inside = set(order)
    entering = [p for m in order for p in graph.nx.predecessors(m) if p not in inside]
    leaving = [m for m in order if any(s not in inside for s in graph.nx.successors(m))]
    ins, outs = (
        {format_shape(graph[n].out_shape): 0 for n in group} for group in (entering, leaving)
    )
    ins.pop("", None)
    outs.pop("", None)
    if not outs:
        return ""
    return f"{', '.join(ins)} → {', '.join(outs)}" if ins else ", ".join(outs)


def _highlighted(
    graph: ModelGraph, highlight: Iterable[str] | Callable[[Layer], bool] | None
) -> list[str]:
    if highlight is None:
        return []
    if callable(highlight):
        return [layer.name for layer in graph.layers() if highlight(layer)]
    names = [highlight] if isinstance(highlight, str) else list(highlight)
    return [graph.layer(name).name for name in names]  # an unknown name raises


def _clusters(
    blocks: list[Block], keys: dict[str, str], nodes: dict[str, _Node]
) -> tuple[dict[str, str | None], dict[str | None, list[Block]]]:
    """Each node's innermost drawn cluster, and each cluster's drawn child clusters.

    A block is a cluster when every node it shows lies wholly inside it and it
    does not show as one collapsed node.
    """
    by_name = {block.name: block for block in blocks}
    drawn: set[str] = set()
    for block in blocks:
        shown = [nodes[key] for key in dict.fromkeys(keys[name] for name in block.layers)]
        collapsed = len(shown) == 1 and shown[0].group is not None
        if not collapsed and all(node.names <= set(block.layers) for node in shown):
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
    graph: ModelGraph, keys: dict[str, str], nodes: dict[str, _Node]
) -> dict[tuple[str, str], str]:
    """Edges between drawn nodes, one per pair; a merged edge keeps its strongest role."""
    roles: dict[tuple[str, str], str] = {}
    for source, target, data in graph.nx.edges(data=True):
        pair = (keys[source], keys[target])
        if pair[0] == pair[1] or source not in nodes[pair[0]].names:  # or a folded parameter
            continue
        role = data.get(ATTR_ROLE, ROLE_DATA)
        role = role if role in _ROLE_RANK else ROLE_DATA
        if pair not in roles or _ROLE_RANK[role] < _ROLE_RANK[roles[pair]]:
            roles[pair] = role
    return roles


# -- drawing ---------------------------------------------------------------------------------


def _fill(dot: graphviz.Digraph, plan: _Plan, cluster: str | None) -> None:
    """Add the nodes homed in ``cluster``, then its child clusters, recursively."""
    for key, node in plan.nodes.items():
        if plan.homes[key] == cluster:
            dot.node(key, **_node_attrs(node, plan.show_shapes, key in plan.marked))
    for block in plan.children.get(cluster, []):
        with dot.subgraph(name=f"cluster_{block.name}") as sub:
            title = f"<B>{_esc(block.name)}</B>  {_type_and_kind(block.module_type, block.kind)}"
            style = _CLUSTER_STYLE[block.kind]
            sub.attr(label=f"<{title}>", labeljust="l", style="rounded,filled", **style)
            _fill(sub, plan, block.name)


def _node_attrs(node: _Node, show_shapes: bool, marked: bool) -> dict[str, str]:
    first = node.layers[0]
    attrs = {"label": _label(node, show_shapes)}
    if node.group is not None:
        attrs.update(fillcolor=_GROUP_COLORS[node.group], style="filled,bold")
    else:
        attrs.update(fillcolor=KIND_COLORS[first.kind], shape=_SHAPES.get(first.kind, "box"))
        if first.kind in _SMALL:
            attrs.update(fontsize="8", height="0.25", margin="0.05,0.02")
        if first.opaque:
            attrs.update(style="rounded,filled,dashed", penwidth="2")
    if marked:
        attrs.update(_HIGHLIGHT)
    return attrs


def _label(node: _Node, show_shapes: bool) -> str:
    """Bold name; then type, "opaque", size, parameters; shape; folded parameter nodes."""
    first, count = node.layers[0], len(node.layers)
    if node.group is None:
        details = [_esc(node.module_type)] if _shows_type(first) else []
        details += ["<I>opaque</I>"] if first.opaque else []
    else:
        details = [_type_and_kind(node.module_type, node.group)]
        details += [f"{count} node{'s' if count > 1 else ''}"]
    params = sum(layer.params for layer in node.layers)
    details += [f"{_count(params)} params"] if params else []
    lines = [f"<B>{_esc(node.key)}</B>", " · ".join(details), _esc(node.shapes) * show_shapes]
    if node.parameters:
        short = [_short_name(name) for name in node.parameters]
        lines.append("+ " + (", ".join(short) if len(short) < 3 else f"{len(short)} parameters"))
    head, *rest = [line for line in lines if line]
    small = "".join(f'<BR/><FONT POINT-SIZE="8" COLOR="#333333">{line}</FONT>' for line in rest)
    return f"<{head}{small}>"


def _legend(nodes: Collection[_Node], roles: set[str], highlighted: bool) -> str:
    """An HTML table, two entries a row, of the kinds, node styles and edge styles present."""
    kinds = {node.layers[0].kind for node in nodes if node.group is None}
    groups = {node.group for node in nodes}
    cells = [(_swatch(KIND_COLORS[kind]), str(kind)) for kind in Kind if kind in kinds]
    for group, color in _GROUP_COLORS.items():
        if group in groups:
            cells.append((_swatch(color), f"{group} block" if group != "module" else group))
    if any(node.group is None and node.layers[0].opaque for node in nodes):
        cells.append((_swatch("#ffffff", ' STYLE="DASHED"'), "opaque"))
    for role, (symbol, text) in _EDGE_LEGEND.items():
        if role in roles:
            cells.append((_symbol(_EDGE_STYLE[role]["color"], symbol), text))
    if highlighted:
        cells.append((_symbol(_HIGHLIGHT["color"], "▢"), "highlighted"))
    entries = [
        f'{mark}<TD ALIGN="LEFT"><FONT POINT-SIZE="10">{text}</FONT></TD>' for mark, text in cells
    ]
    rows = "".join(f"<TR>{''.join(entries[i : i + 2])}</TR>" for i in range(0, len(entries), 2))
    return (
        '<<TABLE BORDER="1" COLOR="#999999" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2">'
        f'<TR><TD COLSPAN="4"><B>legend</B></TD></TR>{rows}</TABLE>>'
    )


def _swatch(fill: str, style: str = "") -> str:
    return f'<TD BGCOLOR="{fill}" BORDER="1"{style} WIDTH="18"> </TD>'


def _symbol(color: str, symbol: str) -> str:
    return f'<TD><FONT COLOR="{color}">{symbol}</FONT></TD>'


def _type_and_kind(module_type: str, kind: str) -> str:
    """``'Bottleneck · residual'``; ``'Sequential'`` alone for a sequential block."""
    if not module_type or module_type.lower() == kind:
        return _esc(module_type or kind)
    return _esc(f"{module_type} · {kind}")


def _shows_type(layer: Layer) -> bool:
    """Whether the type adds to the name (``layer1.0.add`` already says ``add``)."""
    last = layer.name.rsplit(".", 1)[-1]
    stem, _, suffix = last.rpartition("_")
    return layer.module_type not in (last, stem if suffix.isdigit() else last)


def _short_name(name: str) -> str:
    """``encoder.encoder_pos_embedding`` -> ``pos_embedding`` (fx repeats the module path)."""
    module, _, attr = name.rpartition(".")
    return attr.removeprefix(module.replace(".", "_") + "_") if module else attr


def _count(n: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


# -- graphviz: the Digraph subclass, a missing `dot`, files --------------------------------


@contextmanager
def _dot_program() -> Iterator[None]:
    """Turn graphviz's ``ExecutableNotFound`` into a :class:`GraphvizNotFoundError`."""
    import graphviz

    try:
        yield
    except graphviz.ExecutableNotFound as err:
        raise GraphvizNotFoundError(_INSTALL_HINT) from err


@functools.cache
def _diagram_class() -> type[graphviz.Digraph]:
    """The Digraph subclass, built on first use so that graphviz loads only then."""
    import graphviz

    class GraphDiagram(graphviz.Digraph):  # type: ignore[misc]
        """A ``graphviz.Digraph`` whose rendering explains how to install a missing ``dot``."""

        def pipe(self, *args: Any, **kwargs: Any) -> Any:
            with _dot_program():
                return super().pipe(*args, **kwargs)

        def render(self, *args: Any, **kwargs: Any) -> Any:
            with _dot_program():
                return super().render(*args, **kwargs)

        def _repr_svg_(self) -> str:
            return self.pipe(format="svg", encoding="utf-8")  # type: ignore[no-any-return]

    return GraphDiagram
