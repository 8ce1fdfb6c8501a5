"""The analysed model: :class:`Layer` records, the :class:`ModelGraph` and :func:`analyze`."""

from fxmaps.graph.model_graph import Layer, ModelGraph, format_shape
from fxmaps.graph.select import Selection, select_layers

from fxmaps.graph.analyze import analyze, graph_for_inputs  # isort: skip

__all__ = [
    "Layer",
    "ModelGraph",
    "Selection",
    "analyze",
    "format_shape",
    "graph_for_inputs",
    "select_layers",
]
