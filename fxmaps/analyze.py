"""``fxmaps.analyze``: trace a model, classify its graph and propagate shapes."""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn.parameter import UninitializedParameter
from torchvision.models import WeightsEnum, get_model_weights, list_models

from fxmaps.classify import Kind, Structure, analyze_structure, infer_layouts, kind_of_node
from fxmaps.errors import DeviceError, FxmapsWarning, InputError, ShapeError
from fxmaps.graph import ROLE_DATA, Layer, ModelGraph, count_parameters
from fxmaps.shapes import (
    ShapeTree,
    all_finite,
    first_non_finite,
    preserved_state,
    propagate,
    shape_of,
)
from fxmaps.tracing import LeafSpec, Traced, trace

__all__ = [
    "ExampleInput",
    "FirstLayer",
    "analyze",
    "as_example_inputs",
    "check_device",
    "check_module",
    "first_layers",
    "graph_for_inputs",
    "non_finite_input_note",
    "non_finite_maps_note",
    "prepare_inputs",
]

ExampleInput = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]
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


def check_module(model: object, caller: str = "analyze()") -> None:
    """Raise ``InputError`` unless ``model`` is an ``nn.Module``; say what it is and the fix."""
    if isinstance(model, nn.Module):
        return
    raise InputError(f"{caller} needs a torch.nn.Module, got {_what_instead(model)}")


def _what_instead(obj: object) -> str:
    """What a non-module is, in words, and how to get the model from it."""
    if isinstance(obj, type):
        if issubclass(obj, nn.Module):
            return (
                f"the class {obj.__name__} instead of a model built from it; "
                f"pass an instance: {obj.__name__}()"
            )
        return f"the class {obj.__name__}, which is not an nn.Module"
    if isinstance(obj, WeightsEnum):
        weights = f"{type(obj).__name__}.{obj.name}"
        builder = next((n for n in list_models() if get_model_weights(n) is type(obj)), "get_model")
        return (
            f"the weights {weights} instead of a model; build the model with them: "
            f"torchvision.models.{builder}(weights={weights})"
        )
    if isinstance(obj, ModelGraph):
        return "a ModelGraph, which is already analysed; use it as it is, or pass graph.model"
    if isinstance(obj, str):
        build = f"torchvision.models.get_model({obj!r})" if obj in list_models() else "Net()"
        return f"the string {obj!r}; build the model first, for example {build}"
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return (
            "a state dict (names mapped to tensors) instead of a model; build the model and "
            "load it: model = Net(); model.load_state_dict(state)"
        )
    if callable(obj) and hasattr(obj, "__name__"):
        name = obj.__name__
        if name == "<lambda>":
            return "a lambda function; wrap it in an nn.Module whose forward calls it"
        return f"the function {name}; if it builds the model, call it and pass the result: {name}()"
    return (
        f"{type(obj).__name__}; build the model first (for example torchvision.models.resnet18())"
    )


def as_example_inputs(
    example_input: ExampleInput | None, *, argument: str = "example_input"
) -> tuple[torch.Tensor, ...] | None:
    """``None``, or the input as a tuple of tensors; anything else raises ``InputError``.

    NumPy arrays are accepted and turned into tensors with ``torch.as_tensor``
    (sharing their memory); the checks of :func:`prepare_inputs` then apply to
    them as to any tensor (an ``(H, W, C)`` ``uint8`` photo is refused there
    with what to do).
    """
    if example_input is None:
        return None
    if isinstance(example_input, (torch.Tensor, np.ndarray)):
        return (_as_tensor(example_input, argument),)
    items = example_input if isinstance(example_input, (tuple, list)) else ()
    if items and all(isinstance(x, (torch.Tensor, np.ndarray)) for x in items):
        return tuple(_as_tensor(x, argument) for x in items)
    raise InputError(
        f"{argument} must be a tensor or a non-empty tuple of tensors, got "
        f"{_describe_value(example_input)}; {_input_fix(example_input)}"
    )


def _as_tensor(value: torch.Tensor | np.ndarray, argument: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, RuntimeError) as err:
        raise InputError(
            f"{argument}: a NumPy array of dtype {value.dtype} cannot be made a tensor ({err}); "
            "convert it to a float array first, for example array.astype('float32')"
        ) from err


def _describe_value(value: object) -> str:
    if isinstance(value, (tuple, list)):
        kinds = sorted({type(x).__name__ for x in value})
        return (
            f"an empty {type(value).__name__}"
            if not value
            else (f"a {type(value).__name__} of {', '.join(kinds)}")
        )
    return type(value).__name__


def _input_fix(value: object) -> str:
    if isinstance(value, (str, os.PathLike)):
        return f"to look at an image file, load it first: fxmaps.load_image({str(value)!r})"
    if type(value).__module__.startswith("PIL."):
        return "turn the image into a batch with fxmaps.load_image(image)"
    if isinstance(value, Mapping):
        return "pass the tensors themselves, as a tuple in the order forward takes them"
    if (
        isinstance(value, (tuple, list))
        and value
        and not any(isinstance(x, (torch.Tensor, np.ndarray)) for x in value)
    ):
        return "make it a tensor first, for example torch.tensor(values)"
    return "for an image batch pass a tensor of shape (N, C, H, W)"


def check_device(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], *, argument: str = "example input"
) -> None:
    """Raise ``DeviceError`` when an input is not on the device of the model's parameters.

    A model on the meta device (built without values) accepts only meta inputs,
    which give shapes and no values.
    """
    param = next(model.parameters(), None)
    if param is None:
        return
    for i, tensor in enumerate(inputs):
        if tensor.device == param.device:
            continue
        if param.device.type == "meta":
            raise DeviceError(
                f"the model's parameters are on the meta device: they hold no values (it was "
                f"built under torch.device('meta') or with empty weights), but {argument} {i} "
                f"is on {tensor.device}. Give the model real weights first "
                "(model.to_empty(device='cpu'), then load_state_dict), or pass a meta input "
                "to analyze() for shapes only"
            )
        raise DeviceError(
            f"{argument} {i} is on {tensor.device} but the model's parameters are on "
            f"{param.device}; move the input with .to({str(param.device)!r}) or the model "
            f"with .to({str(tensor.device)!r})"
        )


@dataclass(frozen=True)
class FirstLayer:
    """The first layer with weights that an input reaches, for checks of that input."""

    name: str
    kind: Kind
    module: nn.Module | None
    same_rank: bool
    """Whether the input gets there through ops that keep its number of dimensions."""
    same_dtype: bool
    """Whether it gets there through ops that keep its dtype (no ``x.float()`` on the way)."""


_FIRST = frozenset({Kind.CONV, Kind.LINEAR, Kind.NORM, Kind.EMBEDDING, Kind.ATTENTION})
_KEEP_BOTH = frozenset({Kind.ACTIVATION, Kind.DROPOUT, Kind.POOL})
_ARITHMETIC = frozenset(
    {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul}
)
_SAME_RANK_METHODS = frozenset({"add", "sub", "mul", "div", "float", "to", "contiguous", "clone"})


def first_layers(
    graph_module: fx.GraphModule, names: Mapping[fx.Node, str]
) -> list[FirstLayer | None]:
    """For each input (placeholder), the first conv, linear, norm, ... that it reaches."""
    found: list[FirstLayer | None] = []
    for placeholder in [n for n in graph_module.graph.nodes if n.op == "placeholder"]:
        reached, rank, dtype = {placeholder}, {placeholder}, {placeholder}
        first = None
        for node in graph_module.graph.nodes:
            if node.op in ("placeholder", "output") or reached.isdisjoint(node.all_input_nodes):
                continue
            reached.add(node)
            module = (
                graph_module.get_submodule(str(node.target)) if node.op == "call_module" else None
            )
            kind = kind_of_node(node, module)
            data = node.args[0] if node.args else None
            if kind in _FIRST:
                name = names.get(node, node.name)
                first = FirstLayer(name, kind, module, data in rank, data in dtype)
                break
            if data in rank and _keeps_rank(node, kind):
                rank.add(node)
            if data in dtype and kind in (*_KEEP_BOTH, Kind.RESHAPE):
                dtype.add(node)
        found.append(first)
    return found


def _keeps_rank(node: fx.Node, kind: Kind) -> bool:
    if kind in _KEEP_BOTH or kind is Kind.ADD:
        return True
    if node.op == "call_function":
        return node.target in _ARITHMETIC
    return node.op == "call_method" and str(node.target) in _SAME_RANK_METHODS


def prepare_inputs(
    model: nn.Module,
    graph_module: fx.GraphModule,
    names: Mapping[fx.Node, str],
    inputs: tuple[torch.Tensor, ...],
    *,
    argument: str = "example input",
) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Check inputs against the model; fix what is unambiguous, and say so.

    * on another device than the model: ``DeviceError``;
    * an integer, boolean or complex tensor where the first layer it reaches
      computes in floating point (not an embedding): ``InputError`` (an image of
      ``uint8`` pixels must be converted to float and normalised);
    * another floating dtype than the model's (``float64`` for a ``float32``
      model): converted to the model's dtype, with a note;
    * one sample without its batch dimension (``(C, H, W)`` where the first
      conv, ``Conv2d``, takes ``(N, C, H, W)``): given a batch dimension of 1,
      with a note. When the first dimension is not the conv's channel count the
      shape is ambiguous, and fewer dimensions are missing more than the batch:
      ``ShapeError`` with what to do.

    Returns:
        The inputs to run, and the notes to show as warnings.
    """
    check_device(model, inputs, argument=argument)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    prepared: list[torch.Tensor] = []
    notes: list[str] = []
    firsts = first_layers(graph_module, names)
    for i, tensor in enumerate(inputs):
        first = firsts[i] if i < len(firsts) else None
        if first is not None and first.kind is not Kind.EMBEDDING and dtype is not None:
            if first.same_dtype:
                tensor = _floating(tensor, first, dtype, f"{argument} {i}", notes)
            if first.same_rank:
                tensor = _batched(tensor, first, f"{argument} {i}", notes)
        prepared.append(tensor)
    return tuple(prepared), notes


def _floating(
    tensor: torch.Tensor, first: FirstLayer, dtype: torch.dtype, label: str, notes: list[str]
) -> torch.Tensor:
    where = f"{first.kind.value} {first.name!r}"
    if tensor.is_complex():
        raise InputError(
            f"{label} is a {tensor.dtype} tensor, but {where}, the first layer it reaches, "
            f"computes in {dtype}; pass real values, for example x.real or x.abs()"
        )
    if not tensor.is_floating_point():
        pixels = " / 255" if tensor.dtype == torch.uint8 else ""
        raise InputError(
            f"{label} is a {tensor.dtype} tensor, but {where}, the first layer it reaches, "
            f"computes in {dtype}. Convert it to float and normalise it, for example "
            f"x.float(){pixels} followed by the model's normalisation "
            "(fxmaps.load_image(path) does both for image files)"
        )
    if tensor.dtype != dtype and not _autocast(tensor):
        notes.append(
            f"{label} is {tensor.dtype} but the model computes in {dtype}; it was converted to "
            f"{dtype} (convert it yourself, x.to({dtype}), to silence this)"
        )
        return tensor.to(dtype)
    return tensor


def _autocast(tensor: torch.Tensor) -> bool:
    try:
        return bool(torch.is_autocast_enabled(tensor.device.type))
    except (TypeError, RuntimeError):
        return bool(torch.is_autocast_enabled())


def _batched(tensor: torch.Tensor, first: FirstLayer, label: str, notes: list[str]) -> torch.Tensor:
    conv = first.module
    if not isinstance(conv, nn.modules.conv._ConvNd):
        return tensor
    dims, channels, shape = len(conv.kernel_size), conv.in_channels, tuple(tensor.shape)
    axes = {1: "L", 2: "H, W", 3: "D, H, W"}.get(dims, "...")
    where = f"conv {first.name!r} ({type(conv).__name__}) takes (N, {channels}, {axes})"
    if tensor.dim() == dims + 1 and shape[0] == channels:
        notes.append(
            f"{label} of shape {shape} has no batch dimension: {where}; it was taken as one "
            f"sample of shape {(1, *shape)} (pass x.unsqueeze(0) to silence this)"
        )
        return tensor.unsqueeze(0)
    if tensor.dim() == dims + 1:
        if shape[-1] == channels:
            fix = "it looks like one channels-last image: use x.movedim(-1, 0).unsqueeze(0)"
        elif channels == 1:
            fix = "for a batch of single-channel samples add the channel axis: x.unsqueeze(1)"
        else:
            fix = f"pass a batch (N, {channels}, {axes}) or one sample ({channels}, {axes})"
        raise ShapeError(
            f"{label} of shape {shape} is ambiguous: {where}; read as one sample, its first "
            f"dimension ({shape[0]}) would be the channels, but the conv takes {channels}; {fix}"
        )
    if tensor.dim() < dims + 1:
        fix = "x[None, None] for one single-channel sample" if channels == 1 else "a batch"
        raise ShapeError(
            f"{label} of shape {shape} has {tensor.dim()} dimensions but {where}: it lacks "
            f"more than the batch dimension; pass {fix} of shape (N, {channels}, {axes})"
        )
    return tensor


def non_finite_input_note(inputs: tuple[torch.Tensor, ...], argument: str) -> str | None:
    """A note when an input holds NaN or inf (those spread to every map after them)."""
    for i, tensor in enumerate(inputs):
        if not all_finite(tensor):
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            return (
                f"{argument} {i} holds {nan} NaN and {inf} infinite values (of "
                f"{tensor.numel()}); what is computed from them will be NaN or inf too. "
                "Check how the input was loaded and normalised"
            )
    return None


def non_finite_maps_note(first: str | None, what: str = "the model's output") -> str:
    """A note when the model made NaN or inf from a finite input, naming where it started."""
    where = f"node {first!r} is the first to produce them" if first else "where is not known"
    return (
        f"{what} holds NaN or inf values although the input is finite; {where}. Check the "
        "model's weights (a diverged training run, a BatchNorm with a zero running_var, "
        "weights of the wrong model)"
    )


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
