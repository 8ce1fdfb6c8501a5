"""What fxmaps accepts as a model and as inputs: checks that say what is wrong and the fix.

A model must be an ``nn.Module`` (a class, weights enum, string, state dict or
function is named as such, with how to get the model from it); one inside a
``DataParallel``, ``DistributedDataParallel`` or ``torch.compile`` wrapper is
taken out of it, with a note. Inputs may be tensors or NumPy arrays; they are
checked against the model's first layers (channels, rank, dtype, device) before
any forward pass, and a missing batch dimension is added, with a note, where
that is unambiguous.
"""

from __future__ import annotations

import operator
import sys
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn
from torchvision.models import WeightsEnum, get_model_weights, list_models

from fxmaps.errors import DeviceError, FxmapsWarning, InputError, ShapeError
from fxmaps.facts import Kind, facts
from fxmaps.graph.model_graph import ModelGraph
from fxmaps.trace.inputs import Inputs
from fxmaps.trace.shapes import all_finite
from fxmaps.trace.variants import graph_inputs, with_graph_inputs

__all__ = [
    "FirstLayer",
    "check_device",
    "check_module",
    "first_layers",
    "non_finite_input_note",
    "non_finite_maps_note",
    "prepare_inputs",
]


def check_module(
    model: object,
    caller: str = "analyze()",
    *,
    argument: str = "model",
    wanted: str = "a torch.nn.Module",
    stacklevel: int = 3,
) -> nn.Module:
    """The model to analyse: ``model``, or the model inside a wrapper that only runs it
    elsewhere (``nn.DataParallel``, ``DistributedDataParallel``, ``torch.compile``), with an
    ``FxmapsWarning`` saying so; its node names are the inner model's. Raise ``InputError``
    unless ``model`` is an ``nn.Module``, saying what it is and the fix.

    ``stacklevel`` is the warning's, counted from this function: 3 points at the caller
    of the public function that calls this one.
    """
    if not isinstance(model, nn.Module):
        raise InputError(
            f"{caller} needs {wanted}, got {_what_instead(model)}",
            argument=argument,
            got=type(model).__name__,
        )
    inner, path = model, ""
    while (found := _wrapped(inner)) is not None:
        inner, path = found[0], path + found[1]
    _check_python_module(inner, caller, argument)
    if inner is not model:
        warnings.warn(
            _unwrapped_note(caller, model, inner, path), FxmapsWarning, stacklevel=stacklevel
        )
    return inner


def _unwrapped_note(caller: str, model: nn.Module, inner: nn.Module, path: str) -> str:
    wrapper = type(model).__name__
    if path.startswith("._orig_mod"):
        wrapper = f"a torch.compile {wrapper}"
    return (
        f"{caller} was given {wrapper} around {type(inner).__name__}; it uses the model "
        f"inside, model{path} (the same parameters), so node names are "
        f"{type(inner).__name__}'s own, without {path[1:]!r}. Pass model{path} to silence this"
    )


def _check_python_module(model: nn.Module, caller: str, argument: str) -> None:
    """Raise ``InputError`` for a model whose Python code is gone: a TorchScript module
    (``torch.jit.trace`` or ``torch.jit.script``), or one holding a ``torch.compile``d
    submodule, which fxmaps cannot look into without changing the model."""
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            f"{caller} needs the Python module, got a TorchScript {type(model).__name__} "
            "(from torch.jit.trace or torch.jit.script), whose forward is compiled code with "
            "no Python to trace; pass the original nn.Module, the one given to torch.jit",
            argument=argument,
            got=type(model).__name__,
        )
    compiled = sys.modules.get("torch._dynamo.eval_frame")
    found = _part_of_type(model, compiled.OptimizedModule) if compiled is not None else None
    if found is not None:
        name, module = found
        raise InputError(
            f"{caller} needs the Python module, but {type(model).__name__}'s submodule "
            f"{name!r} is a torch.compile OptimizedModule; put the module it compiled "
            f"back, model.{name} = model.{name}._orig_mod (the same parameters), or "
            "compile the whole model instead",
            argument=argument,
            got=type(module).__name__,
        )


def _part_of_type(model: nn.Module, cls: type, prefix: str = "") -> tuple[str, nn.Module] | None:
    """The first submodule of type ``cls`` and its path (a walk of ``_modules``: a few times
    faster than ``named_modules``, and this runs on every call that takes a model)."""
    for name, child in model._modules.items():
        if child is None:
            continue
        path = f"{prefix}{name}"
        if isinstance(child, cls):
            return path, child
        if child._modules and (found := _part_of_type(child, cls, f"{path}.")) is not None:
            return found
    return None


def _wrapped(model: nn.Module) -> tuple[nn.Module, str] | None:
    """The module a wrapper runs, and the attribute that holds it; ``None`` for others."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module, ".module"
    compiled = sys.modules.get("torch._dynamo.eval_frame")  # torch.compile imported it
    if compiled is not None and isinstance(model, compiled.OptimizedModule):
        return model._orig_mod, "._orig_mod"
    return None


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


def check_device(
    model: nn.Module, inputs: Sequence[torch.Tensor], *, argument: str = "example input"
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


_FIRST = frozenset(
    {Kind.CONV, Kind.DOWNSAMPLE, Kind.LINEAR, Kind.NORM, Kind.EMBEDDING, Kind.ATTENTION}
)
_KEEP_BOTH = frozenset({Kind.ACTIVATION, Kind.DROPOUT, Kind.POOL})
_ARITHMETIC = frozenset(
    {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul}
)
_SAME_RANK_METHODS = frozenset({"add", "sub", "mul", "div", "float", "to", "contiguous", "clone"})


def first_layers(graph_module: fx.GraphModule) -> list[FirstLayer | None]:
    """For each input (placeholder), the first conv, linear, norm, ... that it reaches.

    Reads the kinds classification wrote into the nodes' facts; found once per graph.
    """
    found = _FIRST_LAYERS.get(graph_module)
    if found is None:
        found = _FIRST_LAYERS[graph_module] = _first_layers(graph_module)
    return found


_FIRST_LAYERS: weakref.WeakKeyDictionary[fx.GraphModule, list[FirstLayer | None]] = (
    weakref.WeakKeyDictionary()
)


def _first_layers(graph_module: fx.GraphModule) -> list[FirstLayer | None]:
    found: list[FirstLayer | None] = []
    inputs = [n for n in graph_module.graph.nodes if n.op == "placeholder" and not facts(n).hidden]
    for placeholder in inputs:
        reached, rank, dtype = {placeholder}, {placeholder}, {placeholder}
        first = None
        for node in graph_module.graph.nodes:
            if node.op in ("placeholder", "output") or reached.isdisjoint(node.all_input_nodes):
                continue
            reached.add(node)
            module = (
                graph_module.get_submodule(str(node.target)) if node.op == "call_module" else None
            )
            kind = facts(node).kind or Kind.OTHER
            data = node.args[0] if node.args else None
            if kind in _FIRST:
                first = FirstLayer(facts(node).name, kind, module, data in rank, data in dtype)
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
    inputs: Inputs,
    *,
    argument: str = "example input",
) -> tuple[Inputs, list[str]]:
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

    The graph is a symbolic trace: its inputs are the tensor arguments.

    Returns:
        The inputs to run, and the notes to show as warnings.
    """
    check_device(model, inputs.tensors(), argument=argument)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    prepared: list[torch.Tensor] = []
    notes: list[str] = []
    firsts = first_layers(graph_module)
    for i, tensor in enumerate(graph_inputs(model, inputs)):
        first = firsts[i] if i < len(firsts) else None
        if first is not None and first.kind is not Kind.EMBEDDING and dtype is not None:
            if first.same_dtype:
                tensor = _floating(tensor, first, dtype, f"{argument} {i}", notes)
            if first.same_rank:
                tensor = _batched(tensor, first, f"{argument} {i}", notes)
        prepared.append(tensor)
    return with_graph_inputs(model, inputs, prepared), notes


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


def non_finite_input_note(inputs: Sequence[torch.Tensor], argument: str) -> str | None:
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
