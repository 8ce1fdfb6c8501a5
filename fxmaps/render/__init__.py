"""Drawing: the annotated graph (graphviz), feature maps and filters (matplotlib), tables.

Heavy imports (matplotlib, graphviz) happen inside the functions that need them,
so ``import fxmaps`` stays light.
"""
