"""Which parameters each node uses, and how many: a module's own, or the ones a function reads."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from torch import fx, nn
from torch.nn.parameter import UninitializedParameter

from fxmaps.facts import note

__all__ = ["count_parameters", "note_parameters", "parameters_used", "registered"]


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
            value = registered(module, str(arg.target))
            if isinstance(value, nn.Parameter):
                found.append(value)
    return found


def registered(root: nn.Module, target: str) -> Any:
    """What the dotted ``target`` names below ``root``, read from the modules' registries
    (``_modules``, ``_parameters``, ``_buffers``) rather than as attributes.

    While any thread traces, torch.fx patches ``nn.Module.__getattr__`` process-wide: an
    attribute read of a parameter from another thread hands back that trace's proxy (and
    adds a node to its graph). The classification passes run outside the model's lock,
    so they read parameters and buffers this way.
    """
    owner: Any = root
    *path, name = target.split(".")
    for part in [*path, name]:
        if not isinstance(owner, nn.Module):
            return operator.attrgetter(part)(owner)
        state = vars(owner)
        for registry in ("_modules", "_parameters", "_buffers"):
            if part in state[registry]:
                owner = state[registry][part]
                break
        else:
            owner = getattr(owner, part)  # a plain attribute
    return owner


def note_parameters(module: fx.GraphModule) -> None:
    """Write each node's parameter count (shared parameters included) into its facts."""
    for node in module.graph.nodes:
        note(node, params=count_parameters(parameters_used(node, module)))
