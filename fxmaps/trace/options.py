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

from torch import nn

from fxmaps.errors import InputError

__all__ = ["LeafSpec", "TraceRequest", "concrete_args", "split_leaf_specs"]

LeafSpec = type[nn.Module] | nn.Module | str
"""A leaf module given by class, by instance or by qualified name."""

_SIMPLE_DEFAULTS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class TraceRequest:
    """Everything a tracing backend is asked to honour.

    Attributes:
        n_inputs: How many positional inputs calls will pass (``None``: the
            required ones); optional ``forward`` arguments beyond them are fixed
            at their defaults.
        leaf_modules: Classes, instances or qualified names not to trace into.
        autowrap_functions: Functions to record as single call nodes.
        train: Trace the training-mode graph instead of the eval-mode graph.
    """

    n_inputs: int | None = None
    leaf_modules: tuple[LeafSpec, ...] = ()
    autowrap_functions: tuple[Callable[..., Any], ...] = ()
    train: bool = False

    @classmethod
    def of(
        cls,
        *,
        n_inputs: int | None = None,
        leaf_modules: Iterable[LeafSpec] = (),
        autowrap_functions: Iterable[Callable[..., Any]] = (),
        train: bool = False,
    ) -> TraceRequest:
        """A request from any iterables of leaves and functions."""
        return cls(n_inputs, tuple(leaf_modules), tuple(autowrap_functions), train)


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


def concrete_args(model: nn.Module, n_inputs: int | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Optional ``forward`` arguments the caller does not pass, fixed at their defaults;
    and the names of the arguments left as inputs.

    Raises:
        InputError: More inputs than ``forward`` takes, or a required argument missing.
    """
    params = list(inspect.signature(model.forward).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if n_inputs is None:
        n_inputs = sum(1 for p in positional if p.default is p.empty)
    if n_inputs > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InputError(
            f"{type(model).__name__}.forward takes {len(positional)} positional inputs "
            f"({', '.join(p.name for p in positional)}), but the example input has {n_inputs}"
        )
    inputs = {p.name for p in positional[:n_inputs]}
    concrete: dict[str, Any] = {}
    for p in params:
        if p.name in inputs or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise InputError(
                f"{type(model).__name__}.forward needs the argument {p.name!r}, which the "
                "example input does not give; pass a tuple with one tensor per input"
            )
        if isinstance(p.default, _SIMPLE_DEFAULTS):
            concrete[p.name] = p.default
    return concrete, tuple(p.name for p in params if p.name not in concrete)
