"""``fxmaps.analyze``: trace a model, classify its graph and propagate shapes."""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import fx, nn
from torch.nn.parameter import UninitializedParameter

from fxmaps.classify import Kind, Structure, analyze_structure, infer_layouts, kind_of_node
from fxmaps.errors import FxmapsWarning, InputError
from fxmaps.graph.checks import (
    ExampleInput,
    as_example_inputs,
    check_module,
    non_finite_input_note,
    non_finite_maps_note,
    prepare_inputs,
)
from fxmaps.graph.model_graph import ROLE_DATA, Layer, ModelGraph, count_parameters
from fxmaps.trace.shapes import (
    ShapeTree,
    first_non_finite,
    preserved_state,
    propagate,
    shape_of,
)
from fxmaps.trace.tracer import LeafSpec, Traced, trace

__all__ = ["analyze", "graph_for_inputs"]
_LEARNED = frozenset({Kind.CONV, Kind.LINEAR, Kind.ATTENTION, Kind.RECURRENT, Kind.EMBEDDING})


def analyze(
    model: nn.Module,
    example_input: ExampleInput | None = None,
    *,
    leaf_modules: Iterable[LeafSpec] = (),
    autowrap_functions: Iterable[Callable[..., Any]] = (),
    train: bool = False,
) -> ModelGraph:
    """Trace ``model`` with torch.fx and classify every node of its graph.

    Args:
        model: Any ``nn.Module``. It is not changed: its train/eval mode,
            parameters, buffers (BatchNorm statistics included) and hooks are
            as they were when this returns.
        example_input: A tensor, or a tuple of tensors for a model with several
            inputs (NumPy arrays are made tensors). With it, every layer gets its
            ``out_shape``. It is checked first (see :func:`prepare_inputs`): a
            single sample without its batch dimension and another float dtype
            than the model's are fixed with an ``FxmapsWarning``; NaN or inf in
            it, or in the output of a finite input, also give a warning, the
            latter naming the first node that produced them.
        leaf_modules: Module classes, instances or qualified names to keep as
            single nodes instead of tracing into them.
        autowrap_functions: Functions to record as single call nodes.
        train: Analyse the training-mode graph (the eval-mode one by default).

    Returns:
        The classified graph.

    Raises:
        InputError: ``model`` is not an ``nn.Module`` (the message says what it
            is and how to get a model from it), or the input is not tensors or is
            integer where the model computes in floating point.
        DeviceError: The input is on another device than the model.
        TraceError: The model cannot be traced even with opaque submodules.
        ShapeError: The example input does not fit the model; the message names
            the node and the shape it got, and for a too-small input the
            smallest size that fits.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import fxmaps
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(4, 4, 3, padding=1)
        ...     def forward(self, x):
        ...         return x + self.conv(x)
        >>> g = fxmaps.analyze(nn.Sequential(nn.Conv2d(3, 4, 1), Block()))
        >>> g.info()["residual"], [r.merge for r in g.residuals()]
        (1, ['1.add'])
    """
    inputs = as_example_inputs(example_input)
    traced = _trace(
        model, None if inputs is None else len(inputs), leaf_modules, autowrap_functions, train
    )
    shapes: Mapping[fx.Node, ShapeTree | None] = {}
    if inputs is not None:
        inputs, notes = prepare_inputs(model, traced.graph_module, traced.names, inputs)
        bad_input = non_finite_input_note(inputs, "example input")
        for note in [*notes, bad_input]:
            if note:
                warnings.warn(note, FxmapsWarning, stacklevel=2)
        _check_materialized(model)
        with preserved_state(model, train=train):
            found = propagate(traced.graph_module, inputs, traced.names, train=train)
            if not found.finite and bad_input is None:
                first = first_non_finite(traced.graph_module, inputs, traced.names)
                warnings.warn(non_finite_maps_note(first), FxmapsWarning, stacklevel=2)
        shapes = found.shapes
    return _build(model, traced, shapes, inputs, train)


def graph_for_inputs(model: nn.Module, n_inputs: int) -> ModelGraph:
    """The eval-mode graph for calls with ``n_inputs`` positional inputs, without shapes.

    What :func:`fxmaps.extract` uses when given a model: no shape propagation,
    which would cost a forward pass of its own.
    """
    return _build(model, _trace(model, n_inputs, (), (), False), {}, None, False)


def _trace(
    model: nn.Module,
    n_inputs: int | None,
    leaf_modules: Iterable[LeafSpec],
    autowrap_functions: Iterable[Callable[..., Any]],
    train: bool,
) -> Traced:
    check_module(model)
    traced = trace(
        model,
        n_inputs=n_inputs,
        leaf_modules=leaf_modules,
        autowrap_functions=autowrap_functions,
        train=train,
    )
    _warn_opaque(model, traced)
    return traced


def _check_materialized(model: nn.Module) -> None:
    """A forward pass would turn lazy modules into ordinary ones: a change to the model."""
    lazy = [
        name
        for name, module in model.named_modules()
        if any(isinstance(p, UninitializedParameter) for p in module.parameters(recurse=False))
    ]
    if lazy:
        listed = ", ".join(map(repr, lazy[:5]))
        raise InputError(
            f"{type(model).__name__} has uninitialized lazy modules ({listed}); "
            "shape propagation would initialize them and so change the model. Run one forward "
            "pass yourself first, or call analyze() without an example input"
        )


def _warn_opaque(model: nn.Module, traced: Traced) -> None:
    auto = [o for o in traced.opaque if o.location]
    if not auto:
        return
    described = "; ".join(f"{o.name!r} ({o.module_type}: {o.reason} at {o.location})" for o in auto)
    warnings.warn(
        f"fxmaps could not trace into {len(auto)} module(s) of {type(model).__name__} and "
        f"shows each as one opaque node: {described}. Their insides are not shown; pass "
        "leaf_modules=[...] to choose this yourself.",
        FxmapsWarning,
        stacklevel=4,
    )


def _build(
    model: nn.Module,
    traced: Traced,
    shapes: Mapping[fx.Node, ShapeTree | None],
    inputs: tuple[torch.Tensor, ...] | None,
    train: bool,
) -> ModelGraph:
    graph_module = traced.graph_module
    names = traced.names
    nodes = [n for n in graph_module.graph.nodes if n not in traced.hidden]
    opaque = {o.name for o in traced.opaque}
    modules = {n: graph_module.get_submodule(str(n.target)) for n in nodes if n.op == "call_module"}
    kinds = {n: kind_of_node(n, modules.get(n)) for n in nodes}
    used = {n: _parameters_used(n, modules.get(n), graph_module) for n in nodes}

    def learned(node: fx.Node) -> bool:
        return kinds[node] in _LEARNED or (kinds[node] is Kind.OTHER and bool(used[node]))

    structure = analyze_structure(nodes, kinds, names, traced.scopes, learned)
    for node in structure.downsample:
        kinds[node] = Kind.DOWNSAMPLE
    ranks = {n: len(s) for n, s in shapes.items() if s and all(isinstance(d, int) for d in s)}
    layouts = infer_layouts(nodes, kinds, modules, ranks)
    layers = [
        Layer(
            name=names[n],
            kind=kinds[n],
            target=traced.targets.get(n) or _target_name(n),
            module=modules.get(n),
            out_shape=shapes.get(n),
            params=count_parameters(used[n]),
            block=structure.node_block.get(n),
            opaque=names[n] in opaque,
            layout=layouts[n],
        )
        for n in nodes
    ]
    return ModelGraph(
        model=model,
        graph_module=graph_module,
        layers=layers,
        fx_nodes={names[n]: n for n in nodes},
        edges=_edges(nodes, names, traced.hidden, structure),
        blocks=structure.blocks,
        residuals=structure.residuals,
        opaque=traced.opaque,
        autowrapped=traced.autowrapped,
        first_use_params=_first_use_params(nodes, names, used),
        input_shapes=None if inputs is None else tuple(shape_of(t) for t in inputs),
        train=train,
    )


def _parameters_used(
    node: fx.Node, module: nn.Module | None, graph_module: fx.GraphModule
) -> list[nn.Parameter]:
    """Parameters of a called module, or the parameters a function reads directly."""
    if module is not None:
        return list(module.parameters())
    if node.op not in ("call_function", "call_method"):
        return []
    found = []
    for arg in node.all_input_nodes:
        if arg.op == "get_attr":
            value = operator.attrgetter(str(arg.target))(graph_module)
            if isinstance(value, nn.Parameter):
                found.append(value)
    return found


def _target_name(node: fx.Node) -> str:
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def _edges(
    nodes: list[fx.Node],
    names: Mapping[fx.Node, str],
    hidden: frozenset[fx.Node],
    structure: Structure,
) -> list[tuple[str, str, str]]:
    edges = []
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg not in hidden:
                role = structure.edge_roles.get((arg, node), ROLE_DATA)
                edges.append((names[arg], names[node], role))
    return edges


def _first_use_params(
    nodes: list[fx.Node], names: Mapping[fx.Node, str], used: Mapping[fx.Node, list[nn.Parameter]]
) -> dict[str, int]:
    seen: set[int] = set()
    first: dict[str, int] = {}
    for node in nodes:
        fresh = [p for p in used[node] if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if fresh:
            first[names[node]] = count_parameters(fresh)
    return first
