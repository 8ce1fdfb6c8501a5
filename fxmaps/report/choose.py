"""What the report shows by default: which maps, and whether the model is a classifier."""

from __future__ import annotations

from fxmaps.facts import BlockKind, Kind, Layout
from fxmaps.graph import ModelGraph

__all__ = ["default_layers", "logits_node"]


def default_layers(graph: ModelGraph) -> list[str]:
    """Every conv, and the output of each residual block that keeps its channels last.

    A convnet's maps are its convs'; a transformer has one conv (a patch
    embedding) or none, and what it sees is in its blocks' outputs, the tokens of
    a ViT encoder layer or the grid of a Swin block, drawn as spatial maps. The
    names come in execution order.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import fxmaps
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> default_layers(fxmaps.analyze(net, torch.zeros(1, 3, 8, 8)))
        ['0', '2']
    """
    chosen = {layer.name for layer in graph.layers(Kind.CONV)}
    for block in graph.blocks(BlockKind.RESIDUAL):
        output = graph[block.layers[-1]]  # a block's layers come in execution order
        if output.layout is Layout.CHANNELS_LAST and _spatial(output.out_shape):
            chosen.add(output.name)
    return [layer.name for layer in graph.layers() if layer.name in chosen]


def logits_node(graph: ModelGraph) -> str | None:
    """The linear layer whose ``(N, classes)`` output the model returns, if it is a classifier.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import fxmaps
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
        >>> logits_node(fxmaps.analyze(net, torch.zeros(1, 3, 2, 2)))
        '1'
    """
    outputs = graph.layers(Kind.OUTPUT)
    if len(outputs) != 1:
        return None
    sources = list(graph.nx.predecessors(outputs[0].name))
    if len(sources) != 1:
        return None
    layer = graph[sources[0]]
    shape = layer.out_shape
    is_scores = isinstance(shape, tuple) and len(shape) == 2 and shape[-1] not in (None, 0, 1)
    return layer.name if layer.kind is Kind.LINEAR and is_scores else None


def _spatial(shape: object) -> bool:
    """Tokens ``(N, L, C)`` or a grid ``(N, H, W, C)``."""
    return isinstance(shape, tuple) and len(shape) in (3, 4)
