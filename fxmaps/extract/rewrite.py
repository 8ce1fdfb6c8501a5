"""The extraction graph: the traced graph rewritten to return the chosen maps, and only run
what they need.

Built from fxmaps's own traced graph the way torchvision's ``create_feature_extractor``
builds one (the chosen nodes returned from the output node, dead code dropped), but:

* a map that a later in-place op would overwrite is copied when produced, and only
  such maps (:mod:`.aliases`); an in-place op that would overwrite a chosen map and
  that nothing else needs in place runs out of place instead;
* each map's transform (channels, reduction, dtype, device; :mod:`.transforms`) runs
  right after the node that produced it, so full-size maps are never kept;
* each map's version counter is returned too, so a mutation the analysis could not
  see is caught after the run (the caller rebuilds with that map copied).
"""

from __future__ import annotations

import copy
import inspect
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from fxmaps.extract.aliases import plan_liveness
from fxmaps.extract.resident import ResidentReLU, resident_relu
from fxmaps.extract.transforms import MapOptions, MapTransform
from fxmaps.facts import Kind, facts
from fxmaps.graph import Layer, ModelGraph

__all__ = ["Plan", "build_extraction", "rewrite_for_maps"]

_TRANSFORM_PREFIX = "fxmaps_map_"
_OUT_OF_PLACE_PREFIX = "fxmaps_out_of_place_"


def _version_of(value: Any) -> int:
    """The tensor's version counter (bumped by every in-place op on it or its aliases)."""
    if isinstance(value, torch.Tensor) and not value.is_inference():
        return int(value._version)
    return -1


@dataclass(frozen=True)
class Plan:
    """Which chosen maps are copied when produced, and which in-place nodes run out of place."""

    snapshots: frozenset[str]
    out_of_place: tuple[str, ...]


def build_extraction(
    graph: ModelGraph, layers: list[Layer], options: MapOptions, forced: Iterable[str]
) -> tuple[fx.GraphModule, Plan]:
    """A graph module returning ``(maps, versions, kept channels)`` for the chosen layers.

    ``forced`` names maps to copy whatever the analysis says (found mutated by a run).
    It takes the tensor arguments of a call (the graph's checks of the other
    arguments are dropped).
    """
    chosen = [(layer, graph.fx_node(layer.name)) for layer in layers]
    return rewrite_for_maps(graph.graph_module, chosen, options, forced)


def rewrite_for_maps(
    source: fx.GraphModule,
    chosen: Sequence[tuple[Layer, fx.Node]],
    options: MapOptions,
    forced: Iterable[str],
    *,
    keep_output: bool = False,
    replace: Mapping[str, nn.Module] | None = None,
) -> tuple[fx.GraphModule, Plan]:
    """``source`` rewritten to return ``(maps, versions, kept channels)`` of ``chosen``
    (each a layer and its node in ``source``), or with ``keep_output``
    ``(output, maps, versions, kept)``: a traced region that must still give its output.
    ``replace`` calls other modules at some ``call_module`` targets (shadows)."""
    replace = replace or {}
    nodes = [n for n in source.graph.nodes if n.op != "output"]
    modules = {n: source.get_submodule(str(n.target)) for n in nodes if n.op == "call_module"}
    values = {layer.name: _value_node(node) for layer, node in chosen}
    layers = [layer for layer, _ in chosen]
    returned = {layer.name for layer in layers if layer.kind is Kind.OUTPUT}
    requested = {n for name, v in values.items() if name not in returned for n in _nodes_in(v)}
    at_end = {n for name in returned for n in _nodes_in(values[name])}
    result = _output_value(source) if keep_output else None
    at_end |= set(_nodes_in(result))
    plan = plan_liveness(source, nodes, requested, read_at_end=at_end)
    by_node = {node: layer.name for layer, node in chosen}
    snapshots = ({by_node[n] for n in plan.snapshots if n in by_node} | set(forced)) - returned

    position = {node: i for i, node in enumerate(nodes)}
    ready: dict[fx.Node | None, list[Layer]] = {}  # the node after which each map exists
    for layer in layers:
        inside = _nodes_in(values[layer.name])
        at_production = inside and layer.name not in returned
        last = max(inside, key=position.__getitem__) if at_production else None
        ready.setdefault(last, []).append(layer)
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    root: dict[str, Any] = {}
    outputs: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
    for node in nodes:
        if node in plan.out_of_place:
            env[node] = _copy_out_of_place(new, root, node, modules.get(node), env)
        elif (node.op == "placeholder" and not facts(node).hidden) or node in plan.live:
            env[node] = new.node_copy(node, env.__getitem__)
            if node.op in ("call_module", "get_attr"):
                target = str(node.target)
                shadow = replace.get(target)
                root[target] = shadow if shadow is not None else operator.attrgetter(target)(source)
        for layer in ready.get(node, []):
            value = fx.map_arg(values[layer.name], env.__getitem__)
            _emit(new, root, layer, value, options, layer.name in snapshots, outputs)
    for layer in ready.get(None, []):  # the model's output, after every op
        value = fx.map_arg(values[layer.name], env.__getitem__)
        _emit(new, root, layer, value, options, False, outputs)
    maps, versions, kept = outputs
    taken = ({n: maps[n] for n in values}, versions, kept)
    if keep_output:
        new.output((fx.map_arg(result, env.__getitem__), *taken))
    else:
        new.output(taken)
    rewritten = tuple(
        facts(n).name for n in nodes if n in plan.out_of_place and not facts(n).hidden
    )
    module = fx.GraphModule(root, new, "FeatureExtractorGraph")
    return module, Plan(frozenset(snapshots), rewritten)


def _output_value(source: fx.GraphModule) -> Any:
    output = next(n for n in reversed(source.graph.nodes) if n.op == "output")
    return output.args[0]


def _copy_out_of_place(
    new: fx.Graph,
    root: dict[str, Any],
    node: fx.Node,
    module: nn.Module | None,
    env: dict[fx.Node, fx.Node],
) -> fx.Node:
    """``node`` without its in-place write: the same values, its input left intact.

    A ReLU writes into memory its previous call made resident (:mod:`.resident`). Another
    module is copied (shallowly, so its hooks still run) with ``inplace=False``;
    the user's own module is never changed.
    """
    args = fx.map_arg(node.args, env.__getitem__)
    kwargs = fx.map_arg(node.kwargs, env.__getitem__)
    if resident_relu(node, module):  # its output into memory a previous call made resident
        target = f"{_OUT_OF_PLACE_PREFIX}{len(root)}"
        root[target] = ResidentReLU()
        return new.call_module(target, (args[0],))
    if node.op == "call_module":
        twin = copy.copy(module)
        twin.inplace = False  # type: ignore[union-attr]
        target = f"{_OUT_OF_PLACE_PREFIX}{len(root)}"
        root[target] = twin
        return new.call_module(target, args, kwargs)
    if node.op == "call_method":
        return new.call_method(str(node.target)[:-1], args, kwargs)
    bound = inspect.signature(node.target).bind(*args, **kwargs)  # type: ignore[arg-type]
    bound.arguments["inplace"] = False
    return new.call_function(node.target, bound.args, bound.kwargs)  # type: ignore[arg-type]


def _emit(
    new: fx.Graph,
    root: dict[str, Any],
    layer: Layer,
    value: Any,
    options: MapOptions,
    snapshot: bool,
    outputs: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    """Right where ``layer``'s map is produced: its transform and its version probe."""
    maps, versions, kept = outputs
    kept[layer.name] = None
    if snapshot or not options.identity:
        target = f"{_TRANSFORM_PREFIX}{len(maps)}"
        root[target] = MapTransform(options, layer.layout, snapshot)
        both = new.call_module(target, (value,))
        value = new.call_function(operator.getitem, (both, 0))
        kept[layer.name] = new.call_function(operator.getitem, (both, 1))
    maps[layer.name] = value
    versions[layer.name] = new.call_function(_version_of, (value,))


def _value_node(node: fx.Node) -> Any:
    """What a node's map is: its own output, or for the output node what it returns."""
    return node.args[0] if node.op == "output" else node


def _nodes_in(value: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.map_arg(value, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found
