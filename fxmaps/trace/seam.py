"""The tracing seam: a model, its inputs and what is asked of the trace in; a :class:`Traced` out.

A backend is any callable ``(model, request) -> Traced`` whose graph module's nodes
carry their facts in ``node.meta`` (:mod:`fxmaps.facts`): a name users can type, a
target, the module calls around it, whether it is hidden or opaque. Everything
downstream (shapes, classification, the graph, extraction) reads only that.

The default policy: fxmaps's symbolic tracer first (:func:`.fallback.trace_symbolic`).
A graph it makes whole is the answer. Where it had to stop (in the model's own
``forward``, or at submodules it could only keep as opaque leaves) and an example
input is given, the model is captured instead (:func:`.capture.capture`): run once,
traced wherever torch.fx can follow, Python where it cannot. Without an example input
nothing can run, so what could not be traced stays opaque, or fails with what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from torch import nn

from fxmaps.trace.capture import capture
from fxmaps.trace.fallback import OwnCodeFailure, trace_symbolic
from fxmaps.trace.inputs import Inputs
from fxmaps.trace.options import LeafSpec, NotSymbolic, TraceRequest
from fxmaps.trace.record import Traced
from fxmaps.trace.state import model_lock

__all__ = ["Backend", "trace"]


class Backend(Protocol):
    """A way to capture a model as a graph module whose nodes carry their facts."""

    def __call__(self, model: nn.Module, request: TraceRequest, /) -> Traced: ...


def trace(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    leaf_modules: Iterable[LeafSpec] = (),
    autowrap_functions: Iterable[Callable[..., Any]] = (),
    train: bool = False,
    backend: Backend | None = None,
) -> Traced:
    """Capture ``model`` as a graph module whose nodes carry their facts.

    Args:
        model: The model to trace. Its mode, attributes and parameters are left
            as they were.
        inputs: What the model is called with. With them, what symbolic tracing
            cannot follow runs once as Python and is captured; without them, the
            required arguments are the inputs and optional ones keep their defaults.
        leaf_modules: Classes, instances or qualified names not to trace into.
        autowrap_functions: Functions to record as single call nodes.
        train: Trace the training-mode graph instead of the eval-mode graph.
        backend: What captures the graph, instead of the default policy.

    Raises:
        TraceError: The model cannot be traced and no input was given to run it
            with; the message names the module and the source line, and what to try.
    """
    request = TraceRequest.of(
        inputs=inputs,
        leaf_modules=leaf_modules,
        autowrap_functions=autowrap_functions,
        train=train,
    )
    with model_lock(model):  # tracing sets modes, and fx stores constants on the model
        if backend is not None:
            return backend(model, request)
        if inputs is None:
            return _symbolic_only(model, request)
        return _symbolic_or_captured(model, request)


def _symbolic_or_captured(model: nn.Module, request: TraceRequest) -> Traced:
    try:
        traced = trace_symbolic(model, request, own_failure="signal")
    except OwnCodeFailure as failed:
        return capture(model, request, root=failed.failure)
    except NotSymbolic:
        return capture(model, request)
    return capture(model, request, root=traced) if traced.auto_leaves else traced


def _symbolic_only(model: nn.Module, request: TraceRequest) -> Traced:
    return trace_symbolic(model, request)  # its TraceError says what to try, an input too
