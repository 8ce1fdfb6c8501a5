"""What a trace produces (:class:`Traced`), and how a traced ``fx.Graph`` becomes one.

A backend's graph becomes a ``GraphModule`` that holds the model's own submodules
and attributes (never copies), with the facts tracing learns written into each
node's ``node.meta``: its name and target (written as nodes are created), the
module calls it sits in (``scopes``), whether it is hidden (a placeholder for an
argument fixed at its default, or a check of one) and whether it is opaque.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from fxmaps.facts import Scope, facts, note
from fxmaps.trace.inputs import forward_signature
from fxmaps.trace.naming import RESERVED, attribute, rename_reserved
from fxmaps.trace.regions import Capture, EagerRegion
from fxmaps.trace.shapes import dtype_of

__all__ = ["OpaqueModule", "Traced", "finish", "graph_module", "symbolic_graph", "whole_model"]


@dataclass(frozen=True)
class OpaqueModule:
    """A submodule traced as a single node, and why."""

    name: str
    module_type: str
    reason: str
    location: str


@dataclass(frozen=True)
class Traced:
    """What tracing produced: a graph module whose nodes carry their facts in ``node.meta``
    (see :mod:`fxmaps.facts`), and what could not be traced into.

    Attributes:
        graph_module: The graph. For a captured model it describes the run it was
            captured from (see :mod:`.capture`); its :attr:`capture` says how to run
            the model that way again.
        opaque: Module calls shown as one node, with what they hide.
        autowrapped: Helper functions recorded as single call nodes so that tracing
            could go on.
        auto_leaves: Qualified paths of submodules made leaves because tracing
            failed in them (a capture opens them).
        eager: Module calls whose own ``forward`` ran as Python (capture).
        capture: How the captured model ran, or ``None`` for a symbolic trace.
    """

    graph_module: fx.GraphModule
    opaque: tuple[OpaqueModule, ...]
    autowrapped: tuple[str, ...]
    auto_leaves: frozenset[str] = frozenset()
    eager: tuple[EagerRegion, ...] = ()
    capture: Capture | None = None


def symbolic_graph(
    tracer: fx.Tracer, root: nn.Module, concrete: dict[str, Any], train: bool
) -> tuple[fx.Graph, dict[str, Any]]:
    """Trace in the requested mode; restore every module's mode and attributes after.

    Returns the graph and the tensor constants fx stored on ``root`` (removed again).
    """
    modes = [(m, m.training) for m in root.modules()]
    attrs = set(vars(root))
    constants: dict[str, Any] = {}
    try:
        root.train(train)
        graph = tracer.trace(root, concrete_args=concrete or None)
    finally:
        for module, mode in modes:
            module.training = mode
        for attr in set(vars(root)) - attrs:
            constants[attr] = getattr(root, attr)
            delattr(root, attr)
    return graph, constants


def graph_module(graph: fx.Graph, model: nn.Module, constants: dict[str, Any]) -> fx.GraphModule:
    """The graph module over ``model``'s own submodules and attributes.

    Graph targets are renamed where they would clash with ``GraphModule``'s own
    attributes, such as a submodule called ``meta``; the node's facts keep the
    qualified name in the model.
    """
    rename_reserved(graph)
    root: dict[str, Any] = {
        str(n.target): _fetch(model, facts(n).target, constants)
        for n in graph.nodes
        if n.op in ("call_module", "get_attr")
    }
    return fx.GraphModule(root, graph, _class_name(model))


def finish(
    module: fx.GraphModule,
    input_names: tuple[str, ...],
    opaque: Iterable[OpaqueModule],
    autowrapped: Iterable[str],
    auto_leaves: Iterable[str] = (),
) -> Traced:
    """Write scopes, hidden and opaque into the nodes' facts; the :class:`Traced` record."""
    opaque = tuple(opaque)
    opaque_names = {o.name for o in opaque}
    for node, scopes in _scopes(module.graph).items():
        note(node, scopes=scopes, opaque=facts(node).name in opaque_names)
    for node in _hidden_nodes(module.graph, input_names):
        note(node, hidden=True)
    for node in module.graph.nodes:
        if node.op == "get_attr":
            note(node, dtype=dtype_of(attribute(module, str(node.target))))
    return Traced(module, opaque, tuple(autowrapped), frozenset(auto_leaves))


def whole_model(model: nn.Module, input_names: tuple[str, ...], opaque: OpaqueModule) -> Traced:
    """The model as one call node: inputs -> the model -> output (optional inputs at their
    defaults). ``opaque.name`` is replaced by the node's name."""
    cls = type(model).__name__
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
    if not name.isidentifier() or name in RESERVED or name in input_names:
        name = f"fxmaps_{name}" if name.isidentifier() else "fxmaps_model"
    parameters = forward_signature(model).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    graph = fx.Graph()
    inputs = [
        graph.placeholder(p.name)
        for p in parameters
        if p.name in input_names and p.kind in positional
    ]
    call = graph.call_module(name, tuple(inputs))
    output = graph.output(call)
    for node in inputs:
        note(node, name=node.name, target=str(node.target))
    note(call, name=name, target=name, opaque=True)
    note(output, name="output", target="output")
    module = fx.GraphModule({name: model}, graph, _class_name(model))
    whole = OpaqueModule(name, cls, opaque.reason, opaque.location)
    return finish(module, input_names, (whole,), ())


def _class_name(model: nn.Module) -> str:
    name = type(model).__name__
    return name if name.isidentifier() else "Traced"


def _fetch(model: nn.Module, target: str, constants: dict[str, Any]) -> Any:
    return constants[target] if target in constants else operator.attrgetter(target)(model)


def _hidden_nodes(graph: fx.Graph, input_names: tuple[str, ...]) -> set[fx.Node]:
    """Placeholders fx made for concrete arguments, and the guards that check them."""
    hidden: set[fx.Node] = set()
    for node in graph.nodes:
        concrete = node.op == "placeholder" and str(node.target).lstrip("*") not in input_names
        guard = (
            node.op not in ("placeholder", "output")
            and bool(node.all_input_nodes)
            and all(arg in hidden for arg in node.all_input_nodes)
        )
        if concrete or guard:
            hidden.add(node)
    return hidden


def _scopes(graph: fx.Graph) -> dict[fx.Node, tuple[Scope, ...]]:
    """Each node's enclosing traced-through module calls, outermost first."""
    cache: dict[str, Scope] = {}

    def scope(key: str, qualname: str, module_type: type) -> Scope:
        if key not in cache:
            _, _, calls = key.partition("@")
            cache[key] = Scope(f"{qualname}_{calls}" if calls else qualname, qualname, module_type)
        return cache[key]

    scopes: dict[fx.Node, tuple[Scope, ...]] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack", {})
        items = list(stack.items())
        if node.op == "call_module":
            items = items[:-1]  # the leaf module itself is the node, not its scope
        scopes[node] = tuple(scope(key, qual, typ) for key, (qual, typ) in items)
    return scopes
