"""The tracing seam: a model and what is asked of the trace in, a :class:`Traced` out.

A backend is any callable ``(model, request) -> Traced`` whose graph module's nodes
carry their facts in ``node.meta`` (:mod:`fxmaps.facts`): a name users can type, a
target, the module calls around it, whether it is hidden or opaque. Everything
downstream (shapes, classification, the graph, extraction) reads only that, so a
backend that captures models symbolic tracing cannot follow plugs in here.
Today's backend is :func:`~fxmaps.trace.fallback.trace_symbolic`: fxmaps's
``fx.Tracer`` under the fallback policy (autowrap, auto-leaf).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from torch import nn

from fxmaps.trace.fallback import trace_symbolic
from fxmaps.trace.options import LeafSpec, TraceRequest
from fxmaps.trace.record import Traced

__all__ = ["Backend", "trace"]


class Backend(Protocol):
    """A way to capture a model as a graph module whose nodes carry their facts."""

    def __call__(self, model: nn.Module, request: TraceRequest, /) -> Traced: ...


def trace(
    model: nn.Module,
    *,
    n_inputs: int | None = None,
    leaf_modules: Iterable[LeafSpec] = (),
    autowrap_functions: Iterable[Callable[..., Any]] = (),
    train: bool = False,
    backend: Backend = trace_symbolic,
) -> Traced:
    """Capture ``model`` as a graph module whose nodes carry their facts.

    Args:
        model: The model to trace. Its mode, attributes and parameters are left
            as they were.
        n_inputs: How many positional inputs the caller will pass; optional
            ``forward`` arguments beyond those are fixed at their defaults.
        leaf_modules: Classes, instances or qualified names not to trace into.
        autowrap_functions: Functions to record as single call nodes.
        train: Trace the training-mode graph instead of the eval-mode graph.
        backend: What captures the graph.

    Raises:
        TraceError: The model cannot be traced; the message names the module and
            the source line, and what to try.
    """
    request = TraceRequest.of(
        n_inputs=n_inputs,
        leaf_modules=leaf_modules,
        autowrap_functions=autowrap_functions,
        train=train,
    )
    return backend(model, request)
