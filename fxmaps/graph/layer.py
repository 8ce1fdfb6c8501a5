"""One node of the analysed graph as users see it: the :class:`Layer` record."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from fxmaps.facts import Kind, Layout, NodeFacts, ShapeTree

__all__ = ["Layer", "format_shape"]


@dataclass(frozen=True)
class Layer:
    """One node of the analysed graph.

    Attributes:
        name: The node name ``create_feature_extractor`` accepts
            (``layer1.0.conv1``; ``_1`` for a second call of a module).
        kind: What the node does.
        target: The module's qualified path for a module call, the function's
            or method's name otherwise.
        module: The called module, or ``None`` for functions and methods.
        out_shape: The output shape, or ``None`` without an example input (or
            for non-tensor outputs).
        params: Number of parameters the node uses (shared ones included).
        macs: Multiply-accumulates of the node in one forward on the example input:
            convolutions, linears, matrix products and attention; 0 for every other
            node and without an example input (see :meth:`ModelGraph.macs`).
        block: The innermost enclosing residual or sequential block, if any.
        opaque: Whether the node is a module fxmaps did not trace into.
        region: For a model fxmaps captured, the module call whose ``forward`` ran as
            Python and ran this node (see ``ModelGraph.eager``; ``""`` for the model's
            own ``forward``); ``None`` for nodes torch.fx traced.
        layout: Whether the output keeps its channels first ``(N, C, ...)`` or last
            ``(N, ..., C)``.
        returned_by: The module calls whose return value this node is, innermost first,
            each as ``(module path, call index)``: ``layer1.1.relu_1`` is returned by
            ``("layer1.1", 0)`` and ``("layer1", 0)``; select them with
            ``fxmaps.Module("layer1")`` or ``"module:layer1"``.
        dtype: The output's dtype when it is one tensor and known (from the example
            input's run, or an attribute's own), else ``None``.
        alias: The name torchvision's naming convention gives this node, where that
            differs from ``name``. torchvision strips a ``_<n>`` suffix from module
            paths, so it can name a node after another module (in ViT, module
            ``ln_2``'s node is its ``ln_1``); fxmaps names each module call by its own
            path and accepts this alias for the node (unless it is another node's name).
    """

    name: str
    kind: Kind
    target: str
    module: nn.Module | None = field(compare=False, repr=False)
    out_shape: ShapeTree | None
    params: int
    block: str | None
    opaque: bool = False
    layout: Layout = Layout.UNKNOWN
    region: str | None = None
    macs: int = 0
    returned_by: tuple[tuple[str, int], ...] = ()
    dtype: torch.dtype | None = None
    alias: str | None = None

    @classmethod
    def of(cls, found: NodeFacts, module: nn.Module | None) -> Layer:
        """The record of a node from its facts (and the module it calls, if any)."""
        return cls(
            name=found.name,
            kind=found.kind or Kind.OTHER,
            target=found.target,
            module=module,
            out_shape=found.shape,
            params=found.params,
            block=found.block,
            opaque=found.opaque,
            layout=found.layout,
            region=found.region,
            macs=found.macs,
            returned_by=found.returned_by,
            alias=found.alias,
            dtype=found.dtype,
        )

    @property
    def module_type(self) -> str:
        """The class name of the called module, or the target for other nodes."""
        return type(self.module).__name__ if self.module is not None else self.target


def format_shape(shape: ShapeTree | None) -> str:
    """``(1, 64, 56, 56)`` -> ``'1×64×56×56'``; tuples of shapes joined by commas."""
    if shape is None:
        return ""
    if all(isinstance(d, int) for d in shape):
        return "×".join(str(d) for d in shape) or "scalar"
    return ", ".join(format_shape(s) for s in shape)  # type: ignore[arg-type]
