"""``fxmaps.analyze``: trace a model, classify its graph and propagate shapes."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn
from torch.nn.parameter import UninitializedParameter

from fxmaps.classify import note_kinds, note_structure
from fxmaps.errors import FxmapsWarning, InputError
from fxmaps.graph.build import build_graph
from fxmaps.graph.checks import (
    check_device,
    check_module,
    non_finite_input_note,
    non_finite_maps_note,
    prepare_inputs,
)
from fxmaps.graph.model_graph import ModelGraph
from fxmaps.trace import LeafSpec, Traced, trace
from fxmaps.trace.inputs import ExampleInput, Inputs, as_inputs
from fxmaps.trace.shapes import first_non_finite, propagate, shape_of
from fxmaps.trace.state import preserved_state
from fxmaps.trace.variants import placeholder_values

__all__ = ["analyze", "graph_for_inputs"]


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
            as they were when this returns. A model in an ``nn.DataParallel``,
            ``DistributedDataParallel`` or ``torch.compile`` wrapper is taken out
            of it (``.module``, ``._orig_mod``), with an ``FxmapsWarning``: the
            node names are the inner model's.
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
    model = check_module(model)
    inputs = as_inputs(example_input, model)
    if inputs is not None:
        check_device(model, inputs.tensors())
        _check_materialized(model)
    traced = _trace(model, inputs, leaf_modules, autowrap_functions, train)
    module = traced.graph_module
    note_kinds(module)
    if inputs is not None:
        inputs = _check_and_run(model, traced, inputs, train)
    shapes = None if inputs is None else tuple(shape_of(t) for t in inputs.tensors())
    return build_graph(model, traced, note_structure(module), shapes, train)


def _check_and_run(model: nn.Module, traced: Traced, inputs: Inputs, train: bool) -> Inputs:
    """Check the inputs against the graph (fixing what is unambiguous), then find every
    node's shape: a run of the traced graph, or what the capture's run saw."""
    module = traced.graph_module
    notes: list[str] = []
    if traced.capture is None:
        inputs, notes = prepare_inputs(model, module, inputs)
    bad_input = non_finite_input_note(inputs.tensors(), "example input")
    for note in [*notes, bad_input]:
        if note:
            warnings.warn(note, FxmapsWarning, stacklevel=3)
    finite, first = _run_for_shapes(model, traced, inputs, train)
    if not finite and bad_input is None:
        warnings.warn(non_finite_maps_note(first), FxmapsWarning, stacklevel=3)
    return inputs


def _run_for_shapes(
    model: nn.Module, traced: Traced, inputs: Inputs, train: bool
) -> tuple[bool, str | None]:
    """Every node's shape written into its facts; whether the output is finite, and if
    not, the first node that made NaN or inf. A capture's run already did both."""
    if traced.capture is not None:
        return traced.capture.finite, traced.capture.first_non_finite
    module = traced.graph_module
    values = placeholder_values(module, model, inputs)
    with preserved_state(model, train=train):
        found = propagate(module, values, train=train, record=True)
        return found.finite, None if found.finite else first_non_finite(module, values)


def graph_for_inputs(model: nn.Module, inputs: Inputs) -> ModelGraph:
    """The eval-mode graph for calls with ``inputs``, without shapes.

    What :func:`fxmaps.extract` uses when given a model: no shape propagation,
    which would cost a forward pass of its own (a model torch.fx cannot follow is
    captured, which runs it once).
    """
    model = check_module(model, "extract()")
    traced = _trace(model, inputs, (), (), False)
    note_kinds(traced.graph_module)
    return build_graph(model, traced, note_structure(traced.graph_module), None, False)


def _trace(
    model: nn.Module,
    inputs: Inputs | None,
    leaf_modules: Iterable[LeafSpec],
    autowrap_functions: Iterable[Callable[..., Any]],
    train: bool,
) -> Traced:
    traced = trace(
        model,
        inputs,
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
            "pass yourself first, or call analyze() without an example input",
            argument="model",
            got=f"{type(model).__name__} with uninitialized lazy modules",
        )


def _warn_opaque(model: nn.Module, traced: Traced) -> None:
    auto = [o for o in traced.opaque if o.location]
    if not auto:
        return
    described = "; ".join(f"{o.name!r} ({o.module_type}: {o.reason} at {o.location})" for o in auto)
    warnings.warn(
        f"fxmaps could not trace into {len(auto)} module(s) of {type(model).__name__} and "
        f"shows each as one opaque node: {described}. Their insides are not shown; pass an "
        "example input (analyze(model, example_input)) to run them as Python and capture "
        "what they compute, or leaf_modules=[...] to choose this yourself.",
        FxmapsWarning,
        stacklevel=4,
    )
