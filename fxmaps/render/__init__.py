"""Rendering: the annotated graph (graphviz), feature maps and filters (matplotlib), reports.

Heavy imports (matplotlib, graphviz) happen inside the functions that need them,
so ``import fxmaps`` stays light.
"""
