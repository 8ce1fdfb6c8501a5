"""The report's graph: Graphviz SVG whose nodes say which graph node they draw.

Two drawings of one graph go into the page: the blocks collapsed (each residual
block, and each block holding none, one node) and every node. Each drawn node's
``<g>`` gets ``data-node`` (the node's name, or the block's for a collapsed
block, which also gets ``data-block``); each cluster's ``<g>`` gets
``data-block``. The names come back from the SVG's ``<title>``s, where Graphviz
writes the DOT identifier that :func:`fxmaps.render.graph.render_graph` gave the
node, and go into attributes escaped. The page's script does the rest (zoom,
pan, expanding a block, selecting a node).
"""

from __future__ import annotations

import html
import re
import warnings

from fxmaps.errors import FxmapsWarning, GraphvizNotFoundError
from fxmaps.graph import ModelGraph
from fxmaps.render.graph import render_graph
from fxmaps.render.plan import GraphPlan, plan_graph

__all__ = ["annotate_svg", "graph_section"]

# Graphviz writes every node and cluster as `<g id="..." class="node|cluster">` whose first
# child is its `<title>`.
_GROUP = re.compile(
    r'<g id="(?P<id>[^"]*)" class="(?P<cls>node|cluster)">'
    r"(?P<gap>\s*)<title>(?P<title>[^<]*)</title>"
)
_OTHER_ID = re.compile(r'<g id="(?P<id>[^"]*)" class="(?P<cls>graph|edge)">')
_COMMENT = re.compile(r"<!--.*?-->\n?", re.S)
_DOT_ESCAPE = re.compile(r"\\(\\|n|r)")  # what render_graph's identifiers escape
_TOOLS = (
    "<div class='tools'>{views}"
    "<button type='button' data-action='zoom-in' title='zoom in'>+</button>"
    "<button type='button' data-action='zoom-out' title='zoom out'>&#8722;</button>"
    "<button type='button' data-action='fit'>fit</button>"
    "<span class='hint'>wheel: zoom · drag: pan · click a node for its maps{block}</span></div>"
)


def graph_section(graph: ModelGraph) -> str:
    """The graph section: the collapsed and the full drawing (one, if nothing collapses)."""
    views = {"blocks": plan_graph(graph, "blocks", None), "full": plan_graph(graph, "none", None)}
    if not any(node.group for node in views["blocks"].nodes.values()):
        del views["blocks"]  # no block to collapse: the two drawings would be the same
    try:
        drawn = {
            view: render_graph(graph, collapse="blocks" if view == "blocks" else "none")
            .pipe(format="svg")
            .decode()
            for view in views
        }
    except GraphvizNotFoundError as err:
        warnings.warn(f"the report has no graph drawing: {err}", FxmapsWarning, stacklevel=4)
        return (
            f"<section id='graph'><h2>Graph</h2><p class='note'>{html.escape(str(err))}</p>"
            "</section>"
        )
    first = next(iter(views))  # shown at first; the other starts hidden
    divs = "".join(
        f"<div class='graph-view' data-view='{view}'{'' if view == first else ' hidden'}>"
        f"{annotate_svg(svg, views[view], prefix=view)}</div>"
        for view, svg in drawn.items()
    )
    buttons = (
        "<button type='button' data-view='blocks'>blocks collapsed</button>"
        "<button type='button' data-view='full'>every node</button>"
        if len(views) > 1
        else ""
    )
    block = ", a block to open it" if len(views) > 1 else ""
    tools = _TOOLS.format(views=buttons, block=block)
    return f"<section id='graph'><h2>Graph</h2>{tools}{divs}</section>"


def annotate_svg(svg: str, plan: GraphPlan, *, prefix: str) -> str:
    """Graphviz's SVG of ``plan`` from its ``<svg>`` tag on, each node and cluster marked.

    Element ids get ``prefix`` so that two drawings in one page keep them unique.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import fxmaps
        >>> from fxmaps.render.plan import plan_graph
        >>> g = fxmaps.analyze(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.zeros(1, 3, 8, 8))
        >>> svg = fxmaps.render_graph(g).pipe(format="svg").decode()
        >>> 'data-node="0"' in annotate_svg(svg, plan_graph(g, "none", None), prefix="full")
        True
    """

    def mark(match: re.Match[str]) -> str:
        name = _undo_dot_escapes(html.unescape(match["title"]))
        attributes = f'id="{prefix}-{match["id"]}" class="{match["cls"]}"'
        if match["cls"] == "cluster":
            attributes += f' data-block="{html.escape(name.removeprefix("cluster_"))}"'
        else:
            attributes += f' data-node="{html.escape(name)}"'
            node = plan.nodes.get(name)
            if node is not None and node.group is not None:
                attributes += f' data-block="{html.escape(name)}"'
        return f"<g {attributes}>{match['gap']}<title>{match['title']}</title>"

    svg = _COMMENT.sub("", svg[svg.index("<svg") :])  # Graphviz's comment before each element
    svg = _GROUP.sub(mark, svg)
    return _OTHER_ID.sub(lambda m: f'<g id="{prefix}-{m["id"]}" class="{m["cls"]}">', svg)


def _undo_dot_escapes(text: str) -> str:
    """A DOT identifier's text back to the name: ``\\\\`` is ``\\``, ``\\n`` a line break."""
    return _DOT_ESCAPE.sub(lambda m: {"\\": "\\", "n": "\n", "r": "\r"}[m[1]], text)
