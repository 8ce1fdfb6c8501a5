"""What a trace is asked for: leaves, autowrapped functions, mode, and the inputs given.

Also the two translations every backend needs: leaf specifications into classes and
qualified names, and ``forward``'s optional arguments that the caller does not pass
into concrete values (traced as proxies, ``if mask is not None`` would silently take
the wrong branch).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fxmaps.errors import InputError
from fxmaps.trace.inputs import Inputs, bind, forward_signature, tensor_leaves

__all__ = [
    "LeafSpec",
    "NotSymbolic",
    "TraceRequest",
    "concrete_args",
    "split_leaf_specs",
]

LeafSpec = type[nn.Module] | nn.Module | str
"""A leaf module given by class, by instance or by qualified name."""

_SIMPLE_DEFAULTS = (type(None), bool, int, float, str)


class NotSymbolic(Exception):
    """The call cannot be traced symbolically as given (a list of tensors as one argument,
    ...): a backend that runs the code must take it."""


@dataclass(frozen=True)
class TraceRequest:
    """Everything a tracing backend is asked to honour.

    Attributes:
        inputs: What the model is called with, or ``None``: then the required
            arguments are inputs and optional ones are fixed at their defaults.
        leaf_modules: Classes, instances or qualified names not to trace into.
        autowrap_functions: Functions to record as single call nodes.
        train: Trace the training-mode graph instead of the eval-mode graph.
    """

    inputs: Inputs | None = None
    leaf_modules: tuple[LeafSpec, ...] = ()
    autowrap_functions: tuple[Callable[..., Any], ...] = ()
    train: bool = False

    @classmethod
    def of(
        cls,
        *,
        inputs: Inputs | None = None,
        leaf_modules: Iterable[LeafSpec] = (),
        autowrap_functions: Iterable[Callable[..., Any]] = (),
        train: bool = False,
    ) -> TraceRequest:
        """A request from any iterables of leaves and functions."""
        return cls(inputs, tuple(leaf_modules), tuple(autowrap_functions), train)


def split_leaf_specs(
    model: nn.Module, specs: Iterable[LeafSpec]
) -> tuple[tuple[type[nn.Module], ...], frozenset[str]]:
    """Leaf specifications as classes and qualified names of submodules of ``model``.

    Raises:
        InputError: An entry is none of a module class, a submodule or its name.
    """
    named = dict(model.named_modules())
    paths = {module: name for name, module in named.items()}
    types: list[type[nn.Module]] = []
    names: set[str] = set()
    for spec in specs:
        if isinstance(spec, type) and issubclass(spec, nn.Module):
            types.append(spec)
        elif isinstance(spec, nn.Module) and spec in paths:
            names.add(paths[spec])
        elif isinstance(spec, str) and spec in named:
            names.add(spec)
        else:
            raise InputError(
                f"leaf_modules entry {spec!r} is not an nn.Module class, a submodule of "
                f"{type(model).__name__}, or the qualified name of one (like 'layer1.0')"
            )
    return tuple(types), frozenset(names)


def concrete_args(
    model: nn.Module, inputs: Inputs | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The ``forward`` arguments fixed for a symbolic trace, and the names left as inputs.

    Given tensors are inputs; given values that hold no tensor are fixed at those
    values; arguments not given are fixed at their defaults. Without ``inputs`` the
    required arguments are the inputs.

    Raises:
        InputError: The inputs do not fit ``forward``, or a required argument is missing.
        NotSymbolic: An argument holds tensors inside a list, tuple or dict.
    """
    params = list(forward_signature(model).parameters.values())
    given = _given(model, inputs, params)
    concrete: dict[str, Any] = {}
    for p in params:
        if p.name in given:
            value = given[p.name]
            if isinstance(value, torch.Tensor):
                continue
            if tensor_leaves(value):
                raise NotSymbolic(f"argument {p.name!r} holds tensors inside a container")
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                concrete[p.name] = value
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise InputError(
                f"{type(model).__name__}.forward needs the argument {p.name!r}, which the "
                "example input does not give; pass a tuple with one tensor per input",
                argument=p.name,
            )
        if isinstance(p.default, _SIMPLE_DEFAULTS):
            concrete[p.name] = p.default
    return concrete, tuple(p.name for p in params if p.name not in concrete)


def _given(
    model: nn.Module, inputs: Inputs | None, params: list[inspect.Parameter]
) -> dict[str, Any]:
    """Each given argument by name; without inputs, a tensor stands for each required one."""
    if inputs is not None:
        return dict(bind(model, inputs).arguments)
    required = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return {p.name: torch.empty(0) for p in required}
