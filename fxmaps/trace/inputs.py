"""Inputs as the model takes them: positional and keyword arguments, nested, tensors or not.

Everywhere fxmaps takes inputs (``analyze``, ``extract``, ``FeatureExtractor``,
``channel_stats``, ``report``, the CLI) it takes the same forms:

* a tensor (or NumPy array): the one positional argument;
* a tuple: the positional arguments (``(image1, image2)``, ``(x, 10)``);
* a dict whose keys are names ``forward`` takes: the keyword arguments
  (``{"input_ids": ids, "attention_mask": mask}``);
* a list: the positional arguments, unless ``forward``'s first parameter is
  annotated as a list (a detection model's ``images: list[Tensor]``), when it is
  that one argument;
* :class:`Inputs` (``Inputs(args=(...), kwargs={...})``) to say it exactly.

Arguments may be lists, tuples and dicts of tensors, and values that are not
tensors (``return_dict=False``, an int timestep). Bound to ``forward``'s signature
(:func:`bind`), the tensors inside, in signature order, are the graph's inputs.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import nn

from fxmaps.errors import InputError

__all__ = [
    "ExampleInput",
    "Inputs",
    "as_inputs",
    "bind",
    "describe_inputs",
    "forward_signature",
    "map_tensors",
    "tensor_leaves",
]


@dataclass(frozen=True, eq=False)
class Inputs:
    """The arguments of one call of a model: ``model(*args, **kwargs)``.

    Example:
        >>> import torch, fxmaps
        >>> inputs = fxmaps.Inputs((torch.zeros(1, 3, 8, 8),), {"scale": 2})
        >>> len(inputs.tensors()), inputs.kwargs["scale"]
        (1, 2)
    """

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor inside the arguments, in order (positional first)."""
        return tensor_leaves((self.args, dict(self.kwargs)))

    def call(self, function: Callable[..., Any]) -> Any:
        """``function(*args, **kwargs)``."""
        return function(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"Inputs({describe_inputs(self)})"


ExampleInput: TypeAlias = "torch.Tensor | np.ndarray | Inputs | Sequence[Any] | Mapping[str, Any]"
"""A tensor, a tuple (or list) of positional arguments, a dict of keyword arguments, or
:class:`Inputs`."""


def as_inputs(
    value: ExampleInput | None, model: nn.Module | None = None, *, argument: str = "example_input"
) -> Inputs | None:
    """``None``, or ``value`` as :class:`Inputs`; anything else raises ``InputError``.

    NumPy arrays anywhere inside are made tensors (``torch.as_tensor``, sharing
    memory). ``model`` decides whether a list is the positional arguments or one
    argument, and whether a dict is keyword arguments or one argument.

    Raises:
        InputError: No tensor anywhere, an empty tuple, or a file name or image
            object where tensors belong; the message says what to do.
    """
    if value is None:
        return None
    inputs = _as_inputs(value, model, argument)
    if inputs is None:
        raise InputError(
            f"{argument} must be a tensor, a tuple of positional arguments, a dict of keyword "
            f"arguments or fxmaps.Inputs(args, kwargs), got {_describe_value(value)}; "
            f"{_input_fix(value)}",
            argument=argument,
            got=_describe_value(value),
        )
    converted = Inputs(*_arrays_as_tensors((inputs.args, dict(inputs.kwargs)), argument))
    if not converted.tensors():
        raise InputError(
            f"{argument} must hold at least one tensor, got {_describe_value(value)}; "
            f"{_input_fix(value)}",
            argument=argument,
            got=_describe_value(value),
        )
    return converted


def _as_inputs(value: object, model: nn.Module | None, argument: str) -> Inputs | None:
    if isinstance(value, Inputs):
        return value
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return Inputs((value,))
    if isinstance(value, tuple):
        return Inputs(value) if value else None
    if isinstance(value, list):
        if not value:
            return None
        return Inputs((value,)) if _takes_a(model, Sequence) else Inputs(tuple(value))
    if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
        if _keyword_names(model, value):
            return Inputs(kwargs=dict(value))
        if _takes_a(model, Mapping):
            return Inputs((value,))
        raise _not_arguments(model, value, argument)
    return None


def _not_arguments(model: nn.Module | None, value: Mapping[str, Any], argument: str) -> InputError:
    names = [p.name for p in _parameters(model) if p.kind not in (p.VAR_POSITIONAL,)]
    keys = ", ".join(map(repr, value))
    first = names[0] if names else "x"
    return InputError(
        f"the keys of {argument} ({keys}) are not arguments of "
        f"{type(model).__name__}.forward ({', '.join(names)}); pass {{{first!r}: ...}} with "
        "forward's argument names as keys, or the tensors themselves as a tuple",
        argument=argument,
        got=f"dict with keys {keys}",
    )


def forward_signature(model: nn.Module) -> inspect.Signature:
    """The signature of ``model.forward`` (without ``self``), read once per class.

    Raises:
        TypeError, ValueError: As :func:`inspect.signature`, for a forward it cannot read.
    """
    forward = model.forward
    function = getattr(forward, "__func__", None)
    if function is None or getattr(forward, "__self__", None) is not model:
        return inspect.signature(forward)
    return _method_signature(function)


@functools.lru_cache(maxsize=1024)
def _method_signature(function: Callable[..., Any]) -> inspect.Signature:
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1:]  # without self
    return signature.replace(parameters=parameters)


def _parameters(model: nn.Module | None) -> list[inspect.Parameter]:
    if model is None:
        return []
    try:
        return list(forward_signature(model).parameters.values())
    except (TypeError, ValueError):
        return []


def _takes_a(model: nn.Module | None, kind: type) -> bool:
    """Whether ``forward``'s first parameter is annotated as ``kind`` (a list or sequence,
    a dict or mapping)."""
    params = _parameters(model)
    if not params or model is None:
        return False
    try:
        hints = typing.get_type_hints(type(model).forward)
    except Exception:  # unresolvable annotations tell nothing
        hints = {}
    hint = hints.get(params[0].name, params[0].annotation)
    origin = typing.get_origin(hint) or hint
    if isinstance(hint, str):
        words = ("list", "sequence") if kind is Sequence else ("dict", "mapping")
        return hint.lower().removeprefix("typing.").startswith(words)
    return isinstance(origin, type) and issubclass(origin, kind) and origin is not str


def _keyword_names(model: nn.Module | None, value: Mapping[str, Any]) -> bool:
    """Whether a dict's keys name ``forward``'s parameters (or the model takes ``**kwargs``)."""
    params = _parameters(model)
    if not params:
        return True
    names = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return True
    return set(value) <= names


def bind(model: nn.Module, inputs: Inputs) -> inspect.BoundArguments:
    """``inputs`` bound to ``model.forward``'s parameters, in signature order.

    Raises:
        InputError: The arguments do not fit ``forward``; the message gives its signature.
    """
    try:
        signature = forward_signature(model)
    except (TypeError, ValueError):
        raise InputError(
            f"{type(model).__name__}.forward has no signature fxmaps can read", argument="model"
        ) from None
    _check_counts(model, signature, inputs)
    try:
        return signature.bind(*inputs.args, **inputs.kwargs)
    except TypeError as err:
        raise InputError(
            f"the inputs ({describe_inputs(inputs)}) do not fit "
            f"{type(model).__name__}.forward{signature}: {err}",
            argument="inputs",
            got=describe_inputs(inputs),
        ) from err


def _check_counts(model: nn.Module, signature: inspect.Signature, inputs: Inputs) -> None:
    """Too many positional inputs, or a required argument missing, said plainly."""
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    name = type(model).__name__
    if len(inputs.args) > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InputError(
            f"{name}.forward takes {len(positional)} positional inputs "
            f"({', '.join(p.name for p in positional)}), but the example input has "
            f"{len(inputs.args)}",
            argument="inputs",
            got=describe_inputs(inputs),
        )
    given = {p.name for p in positional[: len(inputs.args)]} | set(inputs.kwargs)
    for p in params:
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and p.name not in given:
            raise InputError(
                f"{name}.forward needs the argument {p.name!r}, which the example input "
                "does not give; pass a tuple with one tensor per input, or a dict with "
                f"{p.name!r} among its keys",
                argument=p.name,
                got=describe_inputs(inputs),
            )


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """The tensors inside tuples, lists and dicts (dict values in order), depth first."""
    return list(_leaves(value))


def _leaves(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)


def map_tensors(value: Any, function: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with each tensor inside replaced by ``function(tensor)``, structure kept."""
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(map_tensors(v, function) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, function) for v in value)
    if isinstance(value, dict):
        return {k: map_tensors(v, function) for k, v in value.items()}
    return value


def describe_inputs(inputs: Inputs) -> str:
    """``'1×3×8×8 float32, scale=2'``: shapes and dtypes of tensors, values of the rest."""
    parts = [_describe(v) for v in inputs.args]
    parts += [f"{k}={_describe(v)}" for k, v in inputs.kwargs.items()]
    return ", ".join(parts) or "nothing"


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        shape = "×".join(str(d) for d in value.shape) or "scalar"
        return f"{shape} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_describe(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in list(value.items())[:4]) + "}"
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__}"


def _arrays_as_tensors(value: Any, argument: str) -> Any:
    if isinstance(value, np.ndarray):
        return _as_tensor(value, argument)
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(_arrays_as_tensors(v, argument) for v in value)
    if isinstance(value, dict):
        return {k: _arrays_as_tensors(v, argument) for k, v in value.items()}
    return value


def _as_tensor(value: np.ndarray, argument: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, RuntimeError) as err:
        raise InputError(
            f"{argument}: a NumPy array of dtype {value.dtype} cannot be made a tensor ({err}); "
            "convert it to a float array first, for example array.astype('float32')",
            argument=argument,
            got=f"ndarray of {value.dtype}",
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
    if isinstance(value, (tuple, list, Mapping)) and value:
        return "make it a tensor first, for example torch.tensor(values)"
    return "for an image batch pass a tensor of shape (N, C, H, W)"
