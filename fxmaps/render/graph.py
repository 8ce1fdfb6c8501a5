"""Draw a :class:`~fxmaps.ModelGraph` as a graphviz diagram.

Nodes are coloured and shaped by :class:`~fxmaps.Kind`, with a legend of what is
present; residual and sequential blocks become nested clusters; identity skips
(dashed blue) and projection shortcuts (bold orange) stand apart from the data
path; a collapsed block that holds a downsample has an orange border. ``collapse``
trades detail for size. Parameter nodes (``get_attr``: ViT's class token, Swin's
bias tables) are not drawn on their own: the node that uses one names it on its
last line. Dead ends (shape asserts, unused tuple items) are not drawn; the legend
counts them. Which nodes, clusters and edges to draw is planned in
:mod:`fxmaps.render._graph_plan`; this module styles and writes them.

``graphviz`` is imported inside the functions, so ``import fxmaps`` stays light.
"""

from __future__ import annotations

import functools
import html
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fxmaps.classify import BlockKind, Kind
from fxmaps.classify.blocks import ROLE_SHORTCUT, ROLE_SKIP
from fxmaps.errors import FxmapsWarning, GraphvizNotFoundError, OptionError
from fxmaps.files import atomic_path, output_file
from fxmaps.graph import Layer, ModelGraph
from fxmaps.graph.model_graph import ROLE_DATA
from fxmaps.render.plan import DrawnNode, GraphPlan, Highlight, check_collapse, plan_graph

if TYPE_CHECKING:
    import graphviz

__all__ = ["KIND_COLORS", "render_graph", "save_graph"]

# fmt: off
KIND_COLORS = MappingProxyType({
    Kind.CONV: "#9ecae1", Kind.DOWNSAMPLE: "#fdae6b", Kind.LINEAR: "#a1d99b",
    Kind.NORM: "#d9d9d9", Kind.ACTIVATION: "#fff1a8", Kind.POOL: "#c9b8e3",
    Kind.ADD: "#f4a5a5", Kind.CONCAT: "#f6c2de", Kind.RESHAPE: "#e0f3f8",
    Kind.ATTENTION: "#66c2a4", Kind.DROPOUT: "#fde0ef", Kind.UPSAMPLE: "#d9f0a3",
    Kind.EMBEDDING: "#d9c6a5", Kind.RECURRENT: "#8dd3c7", Kind.PARAMETER: "#fffbe0",
    Kind.INPUT: "#bdbdbd", Kind.OUTPUT: "#969696", Kind.OTHER: "#ffffff",
})
# fmt: on
"""Fill colour of each kind's nodes (read-only); no two alike, nor like a group's colour."""

_SHAPES = {Kind.ADD: "oval", Kind.CONCAT: "oval", Kind.INPUT: "invhouse", Kind.OUTPUT: "house"}
_SMALL = frozenset({Kind.OTHER, Kind.DROPOUT, Kind.PARAMETER})  # shape checks, getitem, ...
_GROUP_COLORS = {"residual": "#fdd0a2", "sequential": "#c6dbef", "module": "#b2abd2"}
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
_HIGHLIGHT = {"color": "#d7191c", "penwidth": "3"}
_DOWNSAMPLE_BORDER = "#e6550d"  # a collapsed group that holds a downsample: the shortcut colour
# Small nodes (getitem, dropout, ...): smaller text, with room around it for bold names.
_SMALL_ATTRS = {"fontsize": "8", "height": "0.25", "margin": "0.08,0.04"}
_RANKDIRS = ("TB", "LR", "BT", "RL")
# The legend is the graph's label (top right), so it takes no rank beside the nodes.
_GRAPH_ATTRS = {"nodesep": "0.25", "ranksep": "0.3", "fontname": "Helvetica", "fontsize": "11"}
_GRAPH_ATTRS.update(labelloc="t", labeljust="r")
# Densely wired graphs (DenseNet's concats) have thousands of long edges: bound dot's
# crossing minimisation and network simplex, or it runs for many minutes.
_DENSE = {"mclimit": "0.1", "nslimit": "1"}
_NODE_ATTRS = {"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"}
_EDGE_ATTRS = {"color": "#555555", "arrowsize": "0.6"}
_PNG_DPI = 96  # Graphviz's pixels per inch in a PNG
_PNG_LIMIT = 32767  # pixels a side: Cairo's limit; dot shrinks a larger PNG drawing to fit
_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": None, ".gv": None}
_INSTALL_HINT = (
    "Graphviz's `dot` program, which draws the diagram, was not found on PATH (the `graphviz` "
    "Python package only talks to it). Install Graphviz: `apt-get install graphviz` on "
    "Debian/Ubuntu, `brew install graphviz` on macOS, `conda install graphviz`, or see "
    "https://graphviz.org/download/. The DOT text needs no install: `dot.source`, or "
    "save_graph(dot, 'model.dot')."
)


def render_graph(
    graph: ModelGraph,
    *,
    collapse: str | int = "none",
    show_shapes: bool = True,
    rankdir: str = "TB",
    highlight: Highlight = None,
) -> graphviz.Digraph:
    """Draw the graph's nodes, coloured by kind, with its blocks as clusters.

    Args:
        graph: The analysed model (from :func:`fxmaps.analyze`).
        collapse: ``"none"`` draws every node inside nested block clusters.
            ``"blocks"`` draws as one node each residual block, and each block
            that holds no residual block, outermost first: a ResNet bottleneck,
            an EfficientNet MBConv or a ViT encoder layer becomes one node, and
            stage containers stay as clusters around them; one that holds a
            downsample has an orange border. An integer ``depth``
            merges every node whose name has more than ``depth`` dot-separated
            parts into its ancestor module at that depth. ``"repeats"`` is
            ``"blocks"`` with each run of identical blocks (same layers, same
            shapes, one feeding the next, like ViT's encoder layers) folded into
            one node marked ``×N``. Collapsed views leave out the nodes that only
            compute shapes (``x.shape``, ``x.size(0)``, arithmetic on them); the
            legend counts them.
        show_shapes: Write output shapes (known when the graph was analysed
            with an example input); a collapsed node shows ``in → out``.
        rankdir: Layout direction: ``"TB"``, ``"LR"``, ``"BT"`` or ``"RL"``.
        highlight: Node names, or a predicate on layers, to outline in red. A
            collapsed node is outlined when one of its layers is; a highlighted
            dead end (e.g. a shape assert) is drawn.

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
    check_collapse(collapse)
    if rankdir not in _RANKDIRS:
        raise OptionError(
            f"rankdir={rankdir!r} is not valid; use one of {', '.join(_RANKDIRS)}",
            option="rankdir",
            value=rankdir,
            valid=tuple(_RANKDIRS),
        )
    plan = plan_graph(graph, collapse, highlight)
    dense = _DENSE if len(plan.edges) > 1.5 * len(plan.nodes) else {}
    dot = _diagram_class()(
        name=_id(type(graph.model).__name__),
        graph_attr={**_GRAPH_ATTRS, **dense, "rankdir": rankdir, "label": _legend(plan)},
        node_attr=_NODE_ATTRS,
        edge_attr=_EDGE_ATTRS,
    )
    _fill(dot, plan, show_shapes, None)
    for (tail, head), role in plan.edges.items():
        dot.edge(_id(tail), _id(head), **_EDGE_STYLE[role])
    return dot


def save_graph(
    dot: graphviz.Digraph,
    path: str | os.PathLike[str],
    *,
    dpi: float | None = None,
    scale: float | None = None,
) -> Path:
    """Write the diagram to ``path``; its suffix picks the format.

    ``dpi`` sets a PNG's pixels per inch (Graphviz's default: 96); ``scale`` enlarges a
    PNG (its dpi times ``scale``) or an SVG (its width and height; the drawing keeps its
    coordinates, so it stays sharp). A PDF is vector: size it where it is placed.

    ``.svg``, ``.png`` and ``.pdf`` run Graphviz's ``dot``; ``.dot`` and ``.gv``
    write the DOT text and need no Graphviz install. The file appears whole or
    not at all (written beside it, then renamed). Graphviz shrinks a PNG drawing
    larger than 32767 pixels to fit, which leaves the text of a full
    EfficientNet-B7 too small to read: that warns, and ``.svg`` (zoomable) or a
    ``collapse`` keeps it legible.

    Warns:
        FxmapsWarning: ``dot`` shrank a PNG to its size limit.

    Raises:
        OptionError: The suffix is not one of ``.svg .png .pdf .dot .gv``, or ``dpi``
            or ``scale`` is not a positive number or does not apply to the format.
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
        raise OptionError(
            f"cannot tell the format of {str(target)!r}; use a suffix of: {valid}",
            option="path",
            value=str(target),
            valid=tuple(_FORMATS),
        )
    fmt = _FORMATS[target.suffix.lower()]
    _check_size(fmt, dpi=dpi, scale=scale)
    output_file(target)
    if fmt is None:
        data = dot.source.encode(dot.encoding or "utf-8")
    else:
        drawn = dot
        if fmt == "png" and (dpi or scale):
            drawn = dot.copy()
            drawn.graph_attr["dpi"] = f"{(dpi or _PNG_DPI) * (scale or 1):g}"
        with _dot_program():
            data = drawn.pipe(format=fmt)
        if fmt == "svg" and scale:
            data = _scaled_svg(data, scale)
    if fmt == "png":
        _warn_if_shrunk(data, target)
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    return target


def _check_size(fmt: str | None, *, dpi: float | None, scale: float | None) -> None:
    for option, value, formats in (("dpi", dpi, ("png",)), ("scale", scale, ("png", "svg"))):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise OptionError(
                f"{option}={value!r} is not valid; use a positive number",
                option=option,
                value=value,
                valid=("a positive number",),
            )
        if fmt not in formats:
            raise OptionError(
                f"{option}= applies to {' and '.join('.' + f for f in formats)} files, not "
                f"{'.' + fmt if fmt else 'DOT text'}; a vector file is sized where it is placed",
                option=option,
                value=value,
                valid=formats,
            )


def _scaled_svg(svg: bytes, scale: float) -> bytes:
    """The SVG with its root ``width`` and ``height`` times ``scale`` (``viewBox`` kept)."""
    head, tag, rest = svg.partition(b"<svg")
    end = rest.index(b">")

    def times(match: re.Match[bytes]) -> bytes:
        number = float(match[2]) * scale
        return match[1] + f"{number:g}".encode() + match[3]

    attributes = re.sub(rb'(\b(?:width|height)=")([\d.]+)([a-z]*")', times, rest[:end])
    return head + tag + attributes + rest[end:]


def _warn_if_shrunk(png: bytes, target: Path) -> None:
    """Warn when ``dot`` shrank a PNG to Cairo's size limit: its text may be unreadable."""
    width, height = struct.unpack(">II", png[16:24])  # from the IHDR chunk
    if max(width, height) >= _PNG_LIMIT:
        warnings.warn(
            f"{target.name}: the drawing is larger than the {_PNG_LIMIT} pixels a Graphviz PNG "
            f"can have, so dot shrank it to {width}×{height} and its text may be too small to "
            "read; save it as .svg (zoomable) or pass collapse='blocks' or a module depth",
            FxmapsWarning,
            stacklevel=3,
        )


# -- drawing ---------------------------------------------------------------------------------


def _fill(dot: graphviz.Digraph, plan: GraphPlan, show_shapes: bool, cluster: str | None) -> None:
    """Add the nodes homed in ``cluster``, then its child clusters, recursively."""
    for key in plan.residents.get(cluster, []):
        dot.node(_id(key), **_node_attrs(plan.nodes[key], show_shapes, key in plan.marked))
    for block in plan.children.get(cluster, []):
        with dot.subgraph(name=_id(f"cluster_{block.name}")) as sub:
            title = f"<B>{_esc(block.name)}</B>  {_type_and_kind(block.module_type, block.kind)}"
            style = _CLUSTER_STYLE[block.kind]
            sub.attr(label=f"<{title}>", labeljust="l", style="rounded,filled", **style)
            _fill(sub, plan, show_shapes, block.name)


def _node_attrs(node: DrawnNode, show_shapes: bool, marked: bool) -> dict[str, str]:
    first = node.layers[0]
    attrs = {"label": _label(node, show_shapes)}
    if node.group is not None:
        attrs.update(fillcolor=_GROUP_COLORS[node.group], style="filled,bold")
        if node.has_downsample:
            attrs.update(color=_DOWNSAMPLE_BORDER)
    else:
        attrs.update(fillcolor=KIND_COLORS[first.kind], shape=_SHAPES.get(first.kind, "box"))
        if first.kind in _SMALL:
            attrs.update(_SMALL_ATTRS)
        if first.opaque:
            attrs.update(style="rounded,filled,dashed", penwidth="2")
        elif first.region is not None:
            attrs.update(style="rounded,filled,dotted", penwidth="2")
    if marked:
        attrs.update(_HIGHLIGHT)
    return attrs


def _label(node: DrawnNode, show_shapes: bool) -> str:
    """Bold name; then type, "opaque" or "eager", size, parameters; shape; folded parameter
    nodes."""
    first, count = node.layers[0], len(node.layers)
    if node.group is None:
        details = [_esc(node.module_type)] if _shows_type(first) else []
        details += ["<I>opaque</I>"] if first.opaque else []
        details += ["<I>eager</I>"] if first.region is not None else []
    else:
        details = [_type_and_kind(node.module_type, node.group)]
        details += [f"{count} node{'s' if count > 1 else ''}"]
        details += ["downsample"] if node.has_downsample else []
    params = sum(layer.params for layer in node.layers)
    details += [f"{_count(params)} params"] if params else []
    head = f"<B>{_esc(node.key)}</B>"
    if node.repeats:
        last = node.repeats[-1]
        if last.rpartition(".")[0] == node.key.rpartition(".")[0]:  # siblings: the last part
            last = last.rpartition(".")[2]
        head = f"<B>{_esc(node.key)} … {_esc(last)}  ×{len(node.repeats)}</B>"
        details[1] = f"{count // len(node.repeats)} nodes each"
    lines = [head, " · ".join(details), _esc(node.shapes) * show_shapes]
    if node.parameters:
        short = [_esc(_short_name(name)) for name in node.parameters]
        lines.append("+ " + (", ".join(short) if len(short) < 3 else f"{len(short)} parameters"))
    head, *rest = [line for line in lines if line]
    small = "".join(f'<BR/><FONT POINT-SIZE="8" COLOR="#333333">{line}</FONT>' for line in rest)
    return f"<{head}{small}>"


def _legend(plan: GraphPlan) -> str:
    """An HTML table, two entries a row, of the kinds and styles present; dead ends counted."""
    entries = [
        f'{mark}<TD ALIGN="LEFT"><FONT POINT-SIZE="10">{text}</FONT></TD>'
        for mark, text in _legend_cells(plan)
    ]
    rows = "".join(f"<TR>{''.join(entries[i : i + 2])}</TR>" for i in range(0, len(entries), 2))
    notes = []
    if plan.hidden:
        notes.append(f"{len(plan.hidden)} dead ends not drawn<BR/>(shape asserts, unused outputs)")
    if plan.arithmetic:
        notes.append(f"{len(plan.arithmetic)} shape computations not drawn<BR/>(x.shape, sizes)")
    for note in notes:
        rows += f'<TR><TD COLSPAN="4"><FONT POINT-SIZE="9" COLOR="#555555">{note}</FONT></TD></TR>'
    return (
        '<<TABLE BORDER="1" COLOR="#999999" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2">'
        f'<TR><TD COLSPAN="4"><B>legend</B></TD></TR>{rows}</TABLE>>'
    )


def _legend_cells(plan: GraphPlan) -> list[tuple[str, str]]:
    """(mark cell, text) for each kind, group, node style and edge role present."""
    nodes, roles = plan.nodes.values(), set(plan.edges.values())
    kinds = {node.layers[0].kind for node in nodes if node.group is None}
    groups = {node.group for node in nodes}
    cells = [(_swatch(KIND_COLORS[kind]), str(kind)) for kind in Kind if kind in kinds]
    for group, color in _GROUP_COLORS.items():
        if group in groups:
            cells.append((_swatch(color), f"{group} block" if group != "module" else group))
    if any(node.has_downsample for node in nodes):
        border = f' COLOR="{_DOWNSAMPLE_BORDER}"'
        cells.append((_swatch("#ffffff", border), "holds downsample"))
    if any(node.group is None and node.layers[0].opaque for node in nodes):
        cells.append((_swatch("#ffffff", ' STYLE="DASHED"'), "opaque"))
    if any(node.group is None and node.layers[0].region is not None for node in nodes):
        cells.append((_swatch("#ffffff", ' STYLE="DOTTED"'), "eager: ran as Python"))
    for role, (symbol, text) in _EDGE_LEGEND.items():
        if role in roles:
            cells.append((_symbol(_EDGE_STYLE[role]["color"], symbol), text))
    if plan.marked:
        cells.append((_symbol(_HIGHLIGHT["color"], "▢"), "highlighted"))
    return cells


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


def _id(name: str) -> str:
    """``name`` as a DOT identifier that stands for itself: quoted, never read as an HTML
    string (``<...>``); its backslashes doubled, so none escapes the closing quote, and line
    breaks written ``\\n``, ``\\r``, so none joins lines (DOT keeps all of these as they are
    written, and two names stay two identifiers). Edges take whole identifiers, so a ``:``
    in a name is no port (see :func:`_diagram_class`)."""
    from graphviz import nohtml

    text = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    quoted: str = nohtml(text)  # a str that graphviz never takes for HTML
    return quoted


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
        """A ``graphviz.Digraph`` whose rendering explains how to install a missing ``dot``,
        and whose edges join whole identifiers (``graphviz`` reads ``a:b`` as node ``a``,
        port ``b``)."""

        _quote_edge = staticmethod(graphviz.quoting.quote)

        def pipe(self, *args: Any, **kwargs: Any) -> Any:
            with _dot_program():
                return super().pipe(*args, **kwargs)

        def render(self, *args: Any, **kwargs: Any) -> Any:
            with _dot_program():
                return super().render(*args, **kwargs)

        def _repr_svg_(self) -> str:
            return self.pipe(format="svg", encoding="utf-8")  # type: ignore[no-any-return]

    return GraphDiagram
