"""Classification: what each node is, and how nodes group into blocks."""

from fxmaps.classify.blocks import Block, Residual, Structure, analyze_structure
from fxmaps.classify.kinds import BlockKind, Kind, SkipKind
from fxmaps.classify.layers import (
    kind_of_node,
    register_function_kind,
    register_module_kind,
    reset_kind_rules,
)

__all__ = [
    "Block",
    "BlockKind",
    "Kind",
    "Residual",
    "SkipKind",
    "Structure",
    "analyze_structure",
    "kind_of_node",
    "register_function_kind",
    "register_module_kind",
    "reset_kind_rules",
]
