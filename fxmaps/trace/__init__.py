"""Tracing: a model in, a ``torch.fx.GraphModule`` whose nodes carry their facts out.

The seam is :func:`trace` (:mod:`.seam`); the symbolic backend is fxmaps's own
``fx.Tracer`` (:mod:`.symbolic`) under a fallback policy (:mod:`.fallback`), with its
diagnosis (:mod:`.diagnose`, :mod:`.branches`), autowrapped helpers (:mod:`.autowrap`)
and timm's registry (:mod:`.registry`). Shape propagation and the meta-device runs
(:mod:`.shapes`), model state (:mod:`.state`) and the table of what ops do to storage
(:mod:`.aliasing`) are passes over the traced graph that later stages share.
"""

from fxmaps.trace.inputs import ExampleInput, Inputs, as_inputs
from fxmaps.trace.options import LeafSpec, TraceRequest
from fxmaps.trace.record import OpaqueModule, Traced
from fxmaps.trace.regions import EagerRegion
from fxmaps.trace.seam import Backend, trace

__all__ = [
    "Backend",
    "EagerRegion",
    "ExampleInput",
    "Inputs",
    "LeafSpec",
    "OpaqueModule",
    "TraceRequest",
    "Traced",
    "as_inputs",
    "trace",
]
