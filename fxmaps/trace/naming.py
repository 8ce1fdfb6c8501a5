"""Node names as torchvision's ``create_feature_extractor`` gives them, and graph-module
attribute names that cannot clash with ``GraphModule``'s own.

A module call is named by the module's qualified path (``layer1.0.conv1``); any
other node by its scope and fx's name (``layer1.0.add``); a name seen before gets
``_1``, ``_2``, ... (a module called twice). fx's internal names never reach users.
"""

from __future__ import annotations

import re
from typing import Any

from torch import fx, nn

__all__ = ["RESERVED", "Namer", "attribute", "join", "rename_reserved"]

_SUFFIX = re.compile(r"(.+)_[0-9]+")

RESERVED = frozenset(dir(fx.GraphModule)) | frozenset(vars(fx.GraphModule(nn.Module(), fx.Graph())))
"""Names a submodule or attribute cannot have on a ``GraphModule`` (``meta``, ``graph``, ...)."""


class Namer:
    """torchvision's node naming, with a dictionary instead of a backwards scan."""

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}

    def name(self, scope: str, node: fx.Node) -> str:
        """The public name of ``node``, created inside the module call ``scope``."""
        base = scope if node.op == "call_module" else f"{scope}.{node.name}" if scope else node.name
        return self.unique(base)

    def unique(self, base: str) -> str:
        """``base`` (its ``_N`` suffix dropped) the first time, then ``base_1``, ``base_2``..."""
        match = _SUFFIX.fullmatch(base)
        if match:
            base = match.group(1)
        previous = self._latest.get(base)
        if previous is None:
            name = base
        else:
            postfix = previous[len(base) :]
            name = f"{base}_{int(postfix[1:]) + 1 if postfix else 1}"
        self._latest[name] = name
        match = _SUFFIX.fullmatch(name)
        if match:
            self._latest[match.group(1)] = name
        return name


def rename_reserved(graph: fx.Graph) -> None:
    """Rename targets whose first atom is an attribute every ``GraphModule`` has, and atoms
    that fx's generated code cannot quote (a ``"``, a backslash, a newline: fx writes
    ``getattr(self, "<atom>")`` as it is)."""
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            first, *rest = [_quotable(atom) for atom in str(node.target).split(".")]
            if first in RESERVED:
                first = f"fxmaps_{first}"
            node.target = ".".join([first, *rest])


def _quotable(atom: str) -> str:
    """``atom``, or a stand-in made of its bytes when fx cannot put it in quotes."""
    if atom.isprintable() and '"' not in atom and "\\" not in atom:
        return atom
    return f"fxmaps_{atom.encode().hex()}"


def join(prefix: str, name: str) -> str:
    """A qualified path: ``join("layer1", "0")`` is ``"layer1.0"``; an empty side drops out."""
    return f"{prefix}.{name}" if prefix and name else prefix or name


def attribute(module: nn.Module, target: str) -> Any:
    """The attribute at a dotted ``target`` below ``module`` (a submodule, parameter, ...)."""
    value: Any = module
    for atom in target.split("."):
        value = getattr(value, atom)
    return value
