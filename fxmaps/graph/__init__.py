"""The analysed model: :class:`Layer` records, the :class:`ModelGraph` and :func:`analyze`.

:func:`analyze` runs the pipeline up to here: trace (:mod:`fxmaps.trace`), check the
inputs (:mod:`.checks`), propagate shapes, classify (:mod:`fxmaps.classify`), and
build the record (:mod:`.build`). Selection (:mod:`.select`) is one language for
``ModelGraph.layers`` and ``extract(layers=...)``.
"""

from fxmaps.graph.layer import Layer, format_shape
from fxmaps.graph.select import Module, Selection, renames, require_layers, select_layers

from fxmaps.graph.model_graph import ModelGraph  # isort: skip
from fxmaps.graph.analyze import analyze, graph_for_inputs  # isort: skip

__all__ = [
    "Layer",
    "ModelGraph",
    "Module",
    "Selection",
    "analyze",
    "format_shape",
    "graph_for_inputs",
    "renames",
    "require_layers",
    "select_layers",
]
