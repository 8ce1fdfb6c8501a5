"""Which parameters each node uses, and how many: a module's own, or the ones a function reads."""

from __future__ import annotations

import operator
from collections.abc import Iterable

from torch import fx, nn
from torch.nn.parameter import UninitializedParameter

from fxmaps.facts import note

__all__ = ["count_parameters", "note_parameters", "parameters_used"]


def count_parameters(parameters: Iterable[nn.Parameter]) -> int:
    """Number of elements, with uninitialized (lazy) parameters counted as 0."""
    return sum(0 if isinstance(p, UninitializedParameter) else p.numel() for p in parameters)


def parameters_used(node: fx.Node, module: fx.GraphModule) -> list[nn.Parameter]:
    """Parameters of a called module, or the parameters a function reads directly."""
    if node.op == "call_module":
        return list(module.get_submodule(str(node.target)).parameters())
    if node.op not in ("call_function", "call_method"):
        return []
    found = []
    for arg in node.all_input_nodes:
        if arg.op == "get_attr":
            value = operator.attrgetter(str(arg.target))(module)
            if isinstance(value, nn.Parameter):
                found.append(value)
    return found


def note_parameters(module: fx.GraphModule) -> None:
    """Write each node's parameter count (shared parameters included) into its facts."""
    for node in module.graph.nodes:
        note(node, params=count_parameters(parameters_used(node, module)))
