"""Calling traced graphs: their inputs from a module's arguments, and one trace per kind of call.

A symbolic trace fixes the arguments that are not tensors at the values it was
traced with, so one trace serves every call whose tensors sit in the same places
and whose other arguments are equal (:func:`signature_key`). Its graph takes one
placeholder per ``forward`` parameter: :func:`placeholder_values` gives all of them
(for an interpreter run, checks included); :func:`graph_inputs` only the tensors
(for a graph whose checks were dropped, as extraction builds them).
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import fx, nn

from fxmaps.facts import facts
from fxmaps.trace.inputs import Inputs, bind, forward_signature, tensor_leaves
from fxmaps.trace.naming import join
from fxmaps.trace.record import Traced
from fxmaps.trace.regions import FxVariant

__all__ = [
    "fingerprint",
    "graph_inputs",
    "placeholder_values",
    "signature_key",
    "variant_of",
    "with_graph_inputs",
]


def signature_key(
    path: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...] | None:
    """What a trace of this call depends on; ``None`` when no trace can take the call
    (arguments that do not bind, or that fill ``*args``/``**kwargs``)."""
    try:
        bound = bind(module, Inputs(args, kwargs))
    except Exception:  # any binding failure means: run it as Python
        return None
    parameters = forward_signature(module).parameters
    parts: list[Any] = [path, type(module)]
    for name, value in bound.arguments.items():
        kind = parameters[name].kind
        if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            return None
        parts.append((name, _kind_of(value)))
    return tuple(parts)


def _kind_of(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor):
        return "tensor"
    if tensor_leaves(value):
        return "tensors"
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return ("value", type(value), value)


def fingerprint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    """A cheap summary of a call's arguments: where tensors are, and the other values.

    Two calls with the same fingerprint run the same trace; checked at every call of
    a traced region, so it must cost little more than walking the arguments.
    """
    return tuple(_mark(a) for a in args), tuple((k, _mark(v)) for k, v in kwargs.items())


def _mark(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, (tuple, list)):
        return type(value).__name__, tuple(_mark(v) for v in value)
    if isinstance(value, dict):
        return "dict", tuple((k, _mark(v)) for k, v in value.items())
    try:
        hash(value)
    except TypeError:
        return "object", type(value).__name__
    return "value", value


def placeholder_values(module: fx.GraphModule, model: nn.Module, inputs: Inputs) -> list[Any]:
    """The positional arguments that run ``module``, traced from ``model``, for ``inputs``
    through an ``fx.Interpreter``: one per ``forward`` parameter, the given ones and the
    defaults of the others (fx's own input processing flattens fixed structures)."""
    bound = bind(model, inputs)
    params = list(forward_signature(model).parameters.values())
    placeholders = {n.target: n for n in module.graph.nodes if n.op == "placeholder"}
    values = []
    for param in params:
        if param.name in bound.arguments:
            values.append(bound.arguments[param.name])
        elif param.default is not param.empty:
            values.append(param.default)
        else:
            node = placeholders.get(param.name)
            values.append(node.args[0] if node is not None and node.args else None)
    return values


def graph_inputs(model: nn.Module, inputs: Inputs) -> tuple[Any, ...]:
    """The tensor arguments of a call, in ``forward``'s order: what a traced graph without
    its checks takes."""
    bound = bind(model, inputs)
    return tuple(v for v in bound.arguments.values() if isinstance(v, torch.Tensor))


def with_graph_inputs(model: nn.Module, inputs: Inputs, tensors: Sequence[Any]) -> Inputs:
    """``inputs`` with its tensor arguments (those of :func:`graph_inputs`) replaced."""
    bound = bind(model, inputs)
    replacements = iter(tensors)
    for name, value in list(bound.arguments.items()):
        if isinstance(value, torch.Tensor):
            bound.arguments[name] = next(replacements)
    return Inputs(tuple(bound.args), dict(bound.kwargs))


def variant_of(path: str, traced: Traced) -> FxVariant:
    """The trace of the module at ``path`` as a region. The children it could not trace
    into are leaves of its graph; a capture, or a run of the capture, calls their
    shadows there instead (:attr:`FxVariant.dispatch`), so that they are captured too."""
    module = traced.graph_module
    dispatch = {
        str(node.target): join(path, facts(node).target)
        for node in module.graph.nodes
        if node.op == "call_module" and facts(node).target in traced.auto_leaves
    }
    return FxVariant(path, module, dispatch)
