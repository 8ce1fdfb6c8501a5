"""Classification: what each node is, and how nodes group into blocks."""

from fxmaps.classify.blocks import Block, Residual, Structure, analyze_structure
from fxmaps.classify.kinds import BlockKind, Kind, Layout, SkipKind
from fxmaps.classify.layers import (
    kind_of_node,
    register_function_kind,
    register_module_kind,
    reset_kind_rules,
)
from fxmaps.classify.layout import infer_layouts

__all__ = [
    "Block",
    "BlockKind",
    "Kind",
    "Layout",
    "Residual",
    "SkipKind",
    "Structure",
    "analyze_structure",
    "infer_layouts",
    "kind_of_node",
    "register_function_kind",
    "register_module_kind",
    "reset_kind_rules",
]
