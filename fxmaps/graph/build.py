"""From a classified trace to the :class:`ModelGraph` users hold: records, edges, parameters."""

from __future__ import annotations

from torch import fx, nn

from fxmaps.classify import Structure, count_parameters, parameters_used
from fxmaps.facts import ShapeTree, facts
from fxmaps.graph.layer import Layer
from fxmaps.graph.model_graph import ROLE_DATA, ModelGraph
from fxmaps.trace import Traced

__all__ = ["build_graph"]


def build_graph(
    model: nn.Module,
    traced: Traced,
    structure: Structure,
    input_shapes: tuple[ShapeTree | None, ...] | None,
    train: bool,
) -> ModelGraph:
    """The graph of ``model`` from its trace, whose nodes' facts classification completed."""
    module = traced.graph_module
    nodes = [n for n in module.graph.nodes if not facts(n).hidden]
    return ModelGraph(
        model=model,
        graph_module=module,
        layers=[Layer.of(facts(n), _called(n, module)) for n in nodes],
        edges=_edges(nodes, structure),
        blocks=structure.blocks,
        residuals=structure.residuals,
        opaque=traced.opaque,
        autowrapped=traced.autowrapped,
        first_use_params=_first_use_params(nodes, module),
        input_shapes=input_shapes,
        train=train,
        eager=traced.eager,
        capture=traced.capture,
    )


def _called(node: fx.Node, module: fx.GraphModule) -> nn.Module | None:
    return module.get_submodule(str(node.target)) if node.op == "call_module" else None


def _edges(nodes: list[fx.Node], structure: Structure) -> list[tuple[str, str, str]]:
    edges = []
    for node in nodes:
        target = facts(node).name
        for arg in node.all_input_nodes:
            if not facts(arg).hidden:
                source = facts(arg).name
                edges.append(
                    (source, target, structure.edge_roles.get((source, target), ROLE_DATA))
                )
    return edges


def _first_use_params(nodes: list[fx.Node], module: fx.GraphModule) -> dict[str, int]:
    """Parameters counted on the first node that uses them, so that the counts add up."""
    seen: set[int] = set()
    first: dict[str, int] = {}
    for node in nodes:
        fresh = [p for p in parameters_used(node, module) if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if fresh:
            first[facts(node).name] = count_parameters(fresh)
    return first
