"""The fallback policy around one symbolic trace: what to change when it fails, and retry.

When a trace fails, the failure is diagnosed, then in this order:

1. a plain helper function on the way is autowrapped (recorded as one call node;
   a function timm registers as not traceable is preferred), and the trace retried;
2. else the innermost failing submodule becomes a leaf (every instance at once for a
   class timm registers; other instances of its class are probed alone, so one
   retrace covers them all), and the trace retried;
3. else, for a model that is itself one of torch.nn's modules or a class timm
   registers, the whole model is one opaque node;
4. else ``TraceError`` names the module, the line and the cause it found, and says
   what to try for that cause (:mod:`.advice`).

What became opaque is reported with the reason and the line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from torch import fx, nn

from fxmaps.errors import InputError, TraceError
from fxmaps.facts import facts
from fxmaps.trace.advice import cause_of, trace_error_message
from fxmaps.trace.autowrap import Helper, patch_list
from fxmaps.trace.diagnose import Failure, diagnose, short
from fxmaps.trace.options import NotSymbolic, TraceRequest, concrete_args, split_leaf_specs
from fxmaps.trace.record import (
    OpaqueModule,
    Traced,
    finish,
    graph_module,
    symbolic_graph,
    whole_model,
)
from fxmaps.trace.registry import Untraceable, known_untraceable
from fxmaps.trace.symbolic import SymbolicTracer

__all__ = ["OwnCodeFailure", "trace_symbolic"]

_EXTRA_RETRIES = 32


class OwnCodeFailure(Exception):
    """Tracing failed in the module's own ``forward``, where no leaf choice helps."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def trace_symbolic(
    model: nn.Module, request: TraceRequest, *, own_failure: str = "raise"
) -> Traced:
    """Trace ``model`` with fxmaps's symbolic tracer under the fallback policy.

    Args:
        model: The module to trace.
        request: What to honour (inputs, leaves, autowrapped functions, mode).
        own_failure: When tracing fails in ``model``'s own code: ``"raise"`` a
            ``TraceError``, or ``"signal"`` it with :class:`OwnCodeFailure` for a caller
            that can run that code instead. Either way a model that is itself one of
            torch.nn's layers is kept whole (with ``"raise"``, a class timm registers
            too).

    Raises:
        TraceError: Tracing failed in the model's own ``forward``, or no leaf
            choice helps; the message names the module and the source line.
        InputError: A bad leaf specification, or inputs that do not fit ``forward``.
        NotSymbolic: The inputs cannot be given to a symbolic trace (tensors in a list).
    """
    leaf_types, leaf_names = split_leaf_specs(model, request.leaf_modules)
    concrete, input_names = concrete_args(model, request.inputs)
    known = known_untraceable()
    auto_leaves: dict[str, Failure] = {}
    helpers: dict[int, Helper] = {}

    def new_tracer(names: frozenset[str]) -> SymbolicTracer:
        return SymbolicTracer(
            leaf_types=leaf_types,
            leaf_names=names,
            autowrap_functions=request.autowrap_functions,
            patches=patch_list(helpers.values()),
        )

    for _ in range(sum(1 for _ in model.modules()) + _EXTRA_RETRIES):
        tracer = new_tracer(leaf_names | frozenset(auto_leaves))
        try:
            graph, constants = symbolic_graph(tracer, model, concrete, request.train)
            module = graph_module(graph, model, constants)  # fx's code generation may fail too
        except Exception as err:
            failure = diagnose(err, tracer.failure, known.codes, blamed=tracer.blamed)
            if failure.helper is not None and id(failure.helper[0]) not in helpers:
                helpers[id(failure.helper[0])] = failure.helper
                continue
            leaf = _leaf_for(failure, auto_leaves)
            if leaf is None and own_failure == "signal" and not _is_torch_nn(model):
                raise OwnCodeFailure(failure) from err
            if leaf is None:
                return _whole_or_error(model, input_names, failure, known, err)
            twins = _registered_twins(model, leaf, failure, auto_leaves, known)
            if twins is None:
                twins = {leaf: failure}
                twins.update(_failing_twins(model, leaf, auto_leaves, helpers, new_tracer, request))
            auto_leaves.update(twins)
            continue
        opaque = _opaque_modules(module, (leaf_types, leaf_names), auto_leaves)
        autowrapped = tuple(f"{fn.__module__}.{fn.__qualname__}" for fn, _ in helpers.values())
        return finish(module, input_names, opaque, autowrapped, auto_leaves)
    raise TraceError(f"fxmaps gave up tracing {type(model).__name__}: too many retries")


def _whole_or_error(
    model: nn.Module,
    input_names: tuple[str, ...],
    failure: Failure,
    known: Untraceable,
    err: Exception,
) -> Traced:
    """The model as one opaque node where that is the honest answer, else ``TraceError``."""
    whole = _kept_whole(model, known)
    if whole is None:
        cause = cause_of(model, failure)
        raise TraceError(
            trace_error_message(model, failure, cause),
            module=failure.module_stack[-1] if failure.module_stack else "",
            location=failure.location,
            cause=short(failure.error),
            reason=cause.value,
        ) from err
    noted = replace(failure, note=whole)
    return whole_model(model, input_names, OpaqueModule("", "", noted.reason, noted.location))


def _registered_twins(
    model: nn.Module,
    leaf: str,
    failure: Failure,
    auto_leaves: Mapping[str, Failure],
    known: Untraceable,
) -> dict[str, Failure] | None:
    """Every instance of the failing module's class, if timm registered it as untraceable.

    timm's registry says the class cannot be traced, so no instance is probed.
    """
    cls = type(model.get_submodule(leaf))
    if cls not in known.classes:
        return None
    noted = replace(failure, note=f"timm registers {cls.__name__} as not traceable")
    return {
        name: noted
        for name, module in model.named_modules()
        if type(module) is cls and (name == leaf or not _inside(name, auto_leaves))
    }


def _kept_whole(model: nn.Module, known: Untraceable) -> str | None:
    """Why a model that fails in its own ``forward`` is shown as one opaque node, if it is.

    Only torch.nn's own modules (``TransformerEncoderLayer``, ``LSTM``, ...) and
    classes timm registers as untraceable: code the user cannot change. Any other
    model gets a ``TraceError`` that says what to change.
    """
    cls = type(model).__name__
    if isinstance(model, known.classes):
        return f"timm registers {cls} as not traceable; the model is one node"
    if _is_torch_nn(model):
        return f"torch.nn's {cls} is kept whole"
    return None


def _is_torch_nn(model: nn.Module) -> bool:
    return bool(fx.Tracer.is_leaf_module(fx.Tracer(), model, ""))


def _failing_twins(
    model: nn.Module,
    leaf: str,
    auto_leaves: dict[str, Failure],
    helpers: dict[int, Helper],
    new_tracer: Callable[[frozenset[str]], SymbolicTracer],
    request: TraceRequest,
) -> dict[str, Failure]:
    """Other instances of the failing module's class that fail to trace on their own.

    Probing each one alone costs a trace of that instance; finding them now saves
    a retrace of the whole model per failing instance.
    """
    cls = type(model.get_submodule(leaf))
    twins: dict[str, Failure] = {}
    for name, module in model.named_modules():
        if type(module) is not cls or name == leaf or _inside(name, auto_leaves):
            continue
        tracer = new_tracer(frozenset())
        try:
            concrete, _ = concrete_args(module, None)
            symbolic_graph(tracer, module, concrete, request.train)
        except (InputError, NotSymbolic):
            continue
        except Exception as err:
            failure = diagnose(err, tracer.failure)
            own_code = not failure.module_stack  # not one of the twin's children
            if own_code and (failure.helper is None or id(failure.helper[0]) in helpers):
                twins[name] = failure
    return twins


def _opaque_modules(
    module: fx.GraphModule,
    user_leaves: tuple[tuple[type[nn.Module], ...], frozenset[str]],
    auto_leaves: Mapping[str, Failure],
) -> list[OpaqueModule]:
    """The module calls traced as one node: chosen by the user, or made leaves on failure."""
    leaf_types, leaf_names = user_leaves
    found = []
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        path, submodule = facts(node).target, module.get_submodule(str(node.target))
        failure = auto_leaves.get(path)
        if failure is None and path not in leaf_names and not isinstance(submodule, leaf_types):
            continue
        name, module_type = facts(node).name, type(submodule).__name__
        if failure is None:
            found.append(OpaqueModule(name, module_type, "listed in leaf_modules", ""))
        else:
            found.append(OpaqueModule(name, module_type, failure.reason, failure.location))
    return found


def _inside(name: str, leaves: Mapping[str, object]) -> bool:
    """Whether the module ``name`` is one of ``leaves`` or inside one."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in leaves for i in range(1, len(parts) + 1))


def _leaf_for(failure: Failure, auto_leaves: dict[str, Failure]) -> str | None:
    """The innermost module on the failure's stack that can still become a leaf."""
    for qualname in reversed(failure.module_stack):
        if qualname and qualname not in auto_leaves:
            return qualname
    return None
