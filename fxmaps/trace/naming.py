"""Node names as torchvision's ``create_feature_extractor`` gives them, except where those
name a node after another module; and graph-module attribute names that cannot clash with
``GraphModule``'s own.

A module call is named by the module's qualified path (``layer1.0.conv1``); any
other node by its scope and fx's name (``layer1.0.add``); a name seen before gets
``_1``, ``_2``, ... (a module called twice). fx's internal names never reach users.

torchvision's convention drops a ``_<n>`` suffix before counting, so module
``ln_1`` gets the name ``ln`` and module ``ln_2`` the name ``ln_1``: another
module's path. fxmaps names each module call by its own path (``ln_1``, ``ln_2``)
and never gives any node the path of a module it does not call; where that
differs from torchvision's name, the latter is kept as the node's alias.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from keyword import iskeyword
from typing import Any

from torch import fx, nn

__all__ = ["RESERVED", "Namer", "attribute", "join", "rename_reserved"]

_SUFFIX = re.compile(r"(.+)_[0-9]+")

RESERVED = frozenset(dir(fx.GraphModule)) | frozenset(vars(fx.GraphModule(nn.Module(), fx.Graph())))
"""Names a submodule or attribute cannot have on a ``GraphModule`` (``meta``, ``graph``, ...)."""


class Namer:
    """Node names: torchvision's convention where it names a node by its own module, a
    module's own path where it would not.

    Args:
        modules: The model's module paths, which no node but a call of that module gets.
    """

    def __init__(self, modules: Iterable[str] = ()) -> None:
        self._torchvision = _TorchvisionNamer()
        self._modules = frozenset(modules)
        self._used: set[str] = set()

    def set_modules(self, modules: Iterable[str]) -> None:
        """The module paths of the model being named (before the first name)."""
        self._modules = frozenset(modules)

    def name(self, scope: str, node: fx.Node) -> tuple[str, str | None]:
        """The public name of ``node``, created inside the module call ``scope``, and
        torchvision's name for it where that differs (its alias)."""
        if node.op == "call_module":
            return self.call(scope)
        return self.unique(f"{scope}.{node.name}" if scope else node.name)

    def call(self, path: str) -> tuple[str, str | None]:
        """The name of a call of the module at ``path``: its path the first time, then
        ``path_1``, ``path_2``... skipping names that are other modules' paths."""
        theirs = self._torchvision.unique(path)
        if path not in self._used:
            return self._take(path, theirs)
        if theirs not in self._used and theirs not in self._modules:
            return self._take(theirs, theirs)
        return self._take(self._next(path), theirs)

    def unique(self, base: str) -> tuple[str, str | None]:
        """A node that calls no module: torchvision's name, unless it is a module's path."""
        theirs = self._torchvision.unique(base)
        if theirs not in self._used and theirs not in self._modules:
            return self._take(theirs, theirs)
        match = _SUFFIX.fullmatch(base)
        return self._take(self._next(match.group(1) if match else base), theirs)

    def _next(self, stem: str) -> str:
        count = 1
        while f"{stem}_{count}" in self._used or f"{stem}_{count}" in self._modules:
            count += 1
        return f"{stem}_{count}"

    def _take(self, name: str, theirs: str) -> tuple[str, str | None]:
        self._used.add(name)
        return name, None if theirs == name else theirs


class _TorchvisionNamer:
    """torchvision's node naming, with a dictionary instead of a backwards scan."""

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}

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
    that fx's generated code cannot write (a ``"``, a backslash, a newline: fx writes
    ``getattr(self, "<atom>")`` as it is; a Python keyword such as ``for``: fx writes
    ``self.for``)."""
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            first, *rest = [_quotable(atom) for atom in str(node.target).split(".")]
            if first in RESERVED:
                first = f"fxmaps_{first}"
            node.target = ".".join([first, *rest])


def _quotable(atom: str) -> str:
    """``atom``, or a stand-in made of its bytes when fx cannot write it in code."""
    if atom.isprintable() and '"' not in atom and "\\" not in atom and not iskeyword(atom):
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
