"""Classification after kinds, as passes over a traced graph module writing into ``node.meta``."""

from __future__ import annotations

from torch import fx

from fxmaps.classify.blocks import Structure, analyze_structure
from fxmaps.classify.calls import note_returns
from fxmaps.classify.layout import note_layouts
from fxmaps.classify.macs import note_macs
from fxmaps.classify.parameters import note_parameters
from fxmaps.facts import facts

__all__ = ["note_structure"]


def note_structure(module: fx.GraphModule) -> Structure:
    """Parameter counts, multiply-accumulates, the module calls nodes return, residual
    structure and blocks, then layouts, for every node.

    Runs after :func:`~fxmaps.classify.rules.note_kinds` (which checking inputs reads
    before shapes are propagated); shapes, when propagated, sharpen layouts. Returns
    what the structure pass found beyond the nodes' own facts.
    """
    note_parameters(module)
    note_macs(module)
    note_returns(module)
    visible = [n for n in module.graph.nodes if not facts(n).hidden]
    structure = analyze_structure(visible)
    note_layouts(module, visible)
    return structure
