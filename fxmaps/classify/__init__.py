"""Classification: what each node is, and how nodes group into blocks.

Each pass reads and writes the nodes' facts (:mod:`fxmaps.facts`): kinds from
registries of rules (:mod:`.rules`), parameter counts (:mod:`.parameters`),
residual merges, downsample convs and blocks from the graph's structure
(:mod:`.blocks`), and where each output keeps its channels (:mod:`.layout`).
:func:`note_kinds` runs first (checking inputs reads kinds), :func:`note_structure`
the rest.
"""

from fxmaps.classify.blocks import ROLE_SHORTCUT, ROLE_SKIP, Block, Residual, Structure
from fxmaps.classify.parameters import count_parameters, parameters_used
from fxmaps.classify.passes import note_structure
from fxmaps.classify.rules import (
    kind_of_node,
    note_kinds,
    register_function_kind,
    register_module_kind,
    reset_kind_rules,
)
from fxmaps.facts import BlockKind, Kind, Layout, SkipKind

__all__ = [
    "ROLE_SHORTCUT",
    "ROLE_SKIP",
    "Block",
    "BlockKind",
    "Kind",
    "Layout",
    "Residual",
    "SkipKind",
    "Structure",
    "count_parameters",
    "kind_of_node",
    "note_kinds",
    "note_structure",
    "parameters_used",
    "register_function_kind",
    "register_module_kind",
    "reset_kind_rules",
]
