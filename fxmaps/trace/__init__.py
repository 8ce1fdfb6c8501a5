"""Tracing: a model and its inputs in, a ``torch.fx.GraphModule`` and per-node facts out."""

from fxmaps.trace.tracer import LeafSpec, OpaqueModule, Scope, Traced, trace

__all__ = ["LeafSpec", "OpaqueModule", "Scope", "Traced", "trace"]
