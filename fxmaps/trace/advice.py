"""What to try when a model cannot be traced: the cause fxmaps found, and the advice that fits it.

A :class:`~.diagnose.Failure` says where tracing failed and, where the tracer saw it,
on what value (:class:`~.diagnose.Blame`). :func:`cause_of` names the cause:

* ``forward`` is a decorator's wrapper taking ``(*args, **kwargs)``, or takes only
  those: torch.fx sees no named argument;
* ``forward(x, *args, **kwargs)`` passes its extra arguments on: each is one traced
  value, which cannot be unpacked into a call;
* a list input: ``forward`` iterates over an argument (or takes its ``len()``);
* control flow on tensor sizes (``x.shape``, ``x.size()``);
* data-dependent control flow (a value computed from the tensors' data);

and :func:`trace_error_message` says it, with what to do about that cause only.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable

from torch import nn

from fxmaps.trace.diagnose import Failure, short

__all__ = ["Cause", "cause_of", "trace_error_message"]

_EXAMPLE_INPUT = (
    "pass an example input (analyze(model, example_input)): fxmaps then runs the code "
    "torch.fx cannot follow as Python and traces everything it calls"
)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class Cause(str, enum.Enum):
    """Why torch.fx could not trace a model's own code (:attr:`fxmaps.TraceError.reason`)."""

    WRAPPED_FORWARD = "wrapped forward"
    VARIADIC_FORWARD = "variadic forward"
    EXTRA_ARGUMENTS = "extra arguments"
    LIST_INPUT = "list input"
    SIZE_CONTROL_FLOW = "control flow on sizes"
    DATA_CONTROL_FLOW = "data-dependent control flow"
    UNKNOWN = ""


def cause_of(model: nn.Module, failure: Failure) -> Cause:
    """The cause of ``failure``, a failed trace of ``model``'s own code."""
    blame = failure.blame
    if blame is None:
        return Cause.UNKNOWN
    if blame.argument is not None and blame.argument.startswith("*"):
        if _wrapper(model) is not None:
            return Cause.WRAPPED_FORWARD
        return Cause.EXTRA_ARGUMENTS if _named_arguments(model) else Cause.VARIADIC_FORWARD
    if blame.argument is not None and blame.use in ("iter", "len"):
        return Cause.LIST_INPUT
    if blame.shape_only:
        return Cause.SIZE_CONTROL_FLOW
    if blame.use == "bool":
        return Cause.DATA_CONTROL_FLOW
    return Cause.UNKNOWN


def trace_error_message(model: nn.Module, failure: Failure, cause: Cause) -> str:
    """What failed, where, the cause fxmaps found, and what to try for that cause."""
    where = failure.module_stack[-1] if failure.module_stack else ""
    module = model.get_submodule(where) if where else model
    if where:
        owner = f"submodule {where!r} ({type(module).__name__})"
    else:
        owner = f"the model's own forward ({type(model).__name__})"
    return (
        f"fxmaps could not trace {type(model).__name__}: {short(failure.error)}, raised in "
        f"{owner} at {failure.location or 'an unknown line'}. {_ADVICE[cause](model, failure)}"
    )


def _wrapper(model: nn.Module) -> str | None:
    """The qualified name of the function that stands for ``forward``, if a decorator
    replaced it with one of another name (without ``functools.wraps``)."""
    forward = getattr(type(model), "forward", None)
    name = getattr(forward, "__name__", "forward")
    return None if name == "forward" else str(getattr(forward, "__qualname__", name))


def _named_arguments(model: nn.Module) -> list[str]:
    return [p.name for p in _parameters(model) if p.kind not in _VARIADIC]


def _parameters(model: nn.Module) -> list[inspect.Parameter]:
    """``forward``'s parameters, without ``self`` and annotations."""
    params = inspect.signature(model.forward).parameters.values()
    return [p.replace(annotation=p.empty) for p in params]


def _wrapped_forward(model: nn.Module, failure: Failure) -> str:
    cls = type(model).__name__
    return (
        f"{cls}.forward is replaced by a decorator's wrapper ({_wrapper(model)}) that takes "
        "(*args, **kwargs), so torch.fx sees no named argument and traces each of "
        "*args and **kwargs as one value, which cannot be unpacked. Make the decorator "
        "keep forward's signature with functools.wraps(forward) on its wrapper (torch.fx "
        f"then reads the arguments of the forward it wraps), or {_EXAMPLE_INPUT}."
    )


def _variadic_forward(model: nn.Module, failure: Failure) -> str:
    cls = type(model).__name__
    return (
        f"{cls}.forward takes only *args and **kwargs, which torch.fx traces as one value "
        "each and cannot unpack. Give forward the arguments it takes by name "
        f"(forward(self, x)), or {_EXAMPLE_INPUT}."
    )


def _extra_arguments(model: nn.Module, failure: Failure) -> str:
    cls = type(model).__name__
    named = ", ".join(_named_arguments(model))
    signature = ", ".join(map(str, _parameters(model)))
    variadic = " and ".join(str(p) for p in _parameters(model) if p.kind in _VARIADIC)
    return (
        f"{cls}.forward({signature}) passes on its extra arguments; without an example "
        f"input torch.fx traces {variadic} as one value each, which cannot be unpacked "
        "into a call. Pass an example input (analyze(model, "
        "example_input)): fxmaps binds it to forward (the extra arguments are then what "
        "you pass, or nothing), runs what torch.fx cannot follow as Python and traces "
        f"everything it calls. Or call the model from a module whose forward({named}) "
        "takes named arguments only."
    )


def _list_input(model: nn.Module, failure: Failure) -> str:
    assert failure.blame is not None  # cause_of found a blamed argument
    argument = failure.blame.argument
    how = "takes len() of" if failure.blame.use == "len" else "iterates over"
    return (
        f"{type(model).__name__}.forward {how} its argument {argument!r} (a list or tuple "
        "of tensors?), which torch.fx traces as one value: its length is not known while "
        "tracing. Pass an example input, with the list as one argument in a tuple (analyze(model, "
        "([image1, image2],))): fxmaps then runs this code as Python over the real list "
        "and traces every module it calls."
    )


def _size_control_flow(model: nn.Module, failure: Failure) -> str:
    assert failure.blame is not None  # cause_of found a value from sizes
    how = "branches on" if failure.blame.use == "bool" else "loops over or counts with"
    return (
        f"The code {how} a tensor's size (x.shape, x.size(), x.dim()), which torch.fx "
        "traces as a value of the graph, not as a number, because the size of the input "
        f"is not known without one. {_EXAMPLE_INPUT[0].upper()}{_EXAMPLE_INPUT[1:]}, with "
        "the real sizes. Or move the size-dependent code into a module-level helper "
        "function: fxmaps records a failing helper as one call node."
    )


def _data_control_flow(model: nn.Module, failure: Failure) -> str:
    return (
        "The code branches on a value computed from the tensors' data, which torch.fx "
        f"cannot know while tracing. {_generic(model, failure)}"
    )


def _generic(model: nn.Module, failure: Failure) -> str:
    return (
        "Making submodules opaque did not help because the failing code runs outside any "
        "submodule. Try leaf_modules=[...] to keep a submodule whole, "
        "autowrap_functions=(fn,) for a helper function, or rewrite data-dependent Python "
        "control flow with tensor ops (torch.where) so that torch.fx can record it. Or "
        f"{_EXAMPLE_INPUT}."
    )


_ADVICE: dict[Cause, Callable[[nn.Module, Failure], str]] = {
    Cause.WRAPPED_FORWARD: _wrapped_forward,
    Cause.VARIADIC_FORWARD: _variadic_forward,
    Cause.EXTRA_ARGUMENTS: _extra_arguments,
    Cause.LIST_INPUT: _list_input,
    Cause.SIZE_CONTROL_FLOW: _size_control_flow,
    Cause.DATA_CONTROL_FLOW: _data_control_flow,
    Cause.UNKNOWN: _generic,
}
