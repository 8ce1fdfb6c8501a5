"""Which axis holds the channels of each node's output.

Convolutions, pooling and upsampling produce channels-first maps; linears,
embeddings and attention produce channels-last tokens; permutes move the
channel axis; elementwise and shape-keeping ops inherit the layout of their
first input whose layout is known. Nothing here needs an example input;
output ranks, when known, only sharpen ``transpose``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from fxmaps.facts import Kind, Layout, facts, note

__all__ = ["note_layouts"]

_FIRST = frozenset({Kind.CONV, Kind.DOWNSAMPLE, Kind.POOL, Kind.UPSAMPLE})
_LAST = frozenset({Kind.LINEAR, Kind.EMBEDDING, Kind.ATTENTION, Kind.RECURRENT})
_CHANNEL_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm)
_PERMUTES = frozenset({torch.permute, "permute"})
_TRANSPOSES = frozenset({torch.transpose, torch.swapaxes, "transpose", "swapaxes"})


def note_layouts(module: fx.GraphModule, nodes: Sequence[fx.Node]) -> None:
    """Write the layout of each of ``nodes`` into its facts, in one pass in execution order.

    Reads each node's kind and, when known, its output rank from its facts.
    """
    layouts: dict[fx.Node, Layout] = {}
    for node in nodes:
        called = module.get_submodule(str(node.target)) if node.op == "call_module" else None
        layouts[node] = _layout(node, called, _inherited(node, layouts))
        note(node, layout=layouts[node])


def _layout(node: fx.Node, module: nn.Module | None, inherited: Layout) -> Layout:
    kind = facts(node).kind
    if node.op == "placeholder":
        return Layout.CHANNELS_FIRST
    if node.op == "get_attr":
        return Layout.UNKNOWN
    if kind in _FIRST or isinstance(module, _CHANNEL_NORMS):
        return Layout.CHANNELS_FIRST
    if kind in _LAST:
        return Layout.CHANNELS_LAST
    dims = _permutation(node, module)
    if dims is not None:
        return _moved(inherited, dims)
    if _is_transpose(node):
        return _transposed(node, inherited, _rank(node))
    if kind is Kind.NORM and inherited is Layout.UNKNOWN:
        return Layout.CHANNELS_LAST  # LayerNorm and RMSNorm normalise the last axes
    return inherited


def _rank(node: fx.Node) -> int | None:
    shape = facts(node).shape
    return len(shape) if shape and all(isinstance(d, int) for d in shape) else None


def _inherited(node: fx.Node, layouts: Mapping[fx.Node, Layout]) -> Layout:
    for arg in node.all_input_nodes:
        layout = layouts.get(arg, Layout.UNKNOWN)
        if layout is not Layout.UNKNOWN:
            return layout
    return Layout.UNKNOWN


def _permutation(node: fx.Node, module: nn.Module | None) -> list[int] | None:
    if module is not None:
        dims = getattr(module, "dims", None)
        is_permute = type(module).__name__ == "Permute"
        return list(dims) if is_permute and isinstance(dims, (list, tuple)) else None
    if node.op not in ("call_function", "call_method") or node.target not in _PERMUTES:
        return None
    rest: Any = node.args[1:] or node.kwargs.get("dims", ())
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        rest = rest[0]
    return list(rest) if all(isinstance(d, int) for d in rest) and rest else None


def _moved(layout: Layout, dims: list[int]) -> Layout:
    if layout is Layout.UNKNOWN:
        return layout
    rank = len(dims)
    dims = [d % rank for d in dims]
    axis = 1 if layout is Layout.CHANNELS_FIRST else rank - 1
    if axis not in dims:
        return Layout.UNKNOWN
    return _at(dims.index(axis), rank)


def _is_transpose(node: fx.Node) -> bool:
    return node.op in ("call_function", "call_method") and node.target in _TRANSPOSES


def _transposed(node: fx.Node, layout: Layout, rank: int | None) -> Layout:
    pair = [a for a in node.args[1:3] if isinstance(a, int)]
    if layout is Layout.UNKNOWN or len(pair) != 2:
        return layout
    a, b = pair
    if rank is None and (a < 0 or b < 0) and layout is Layout.CHANNELS_FIRST and 1 in pair:
        return Layout.CHANNELS_LAST if -1 in pair else Layout.UNKNOWN
    if rank is None:
        return Layout.UNKNOWN if layout is Layout.CHANNELS_LAST or 1 in pair else layout
    a, b = a % rank, b % rank
    axis = 1 if layout is Layout.CHANNELS_FIRST else rank - 1
    moved = b if axis == a else a if axis == b else axis
    return _at(moved, rank)


def _at(axis: int, rank: int) -> Layout:
    if axis == 1:
        return Layout.CHANNELS_FIRST
    if axis == rank - 1:
        return Layout.CHANNELS_LAST
    return Layout.UNKNOWN
