"""What fxmaps knows of each graph node, and the closed vocabularies it is written in.

Facts about a node live where torch.fx keeps them: in ``node.meta``, under
:data:`META_KEY`, as one frozen :class:`NodeFacts` record. The pass that learns a
fact writes it (:func:`note`) and the passes after it read it (:func:`facts`):
tracing writes the name, target, scopes and whether a node is hidden or opaque;
shape propagation the shape; classification the kind, layout and block. Nothing
else travels between stages as dictionaries keyed by node.

This module is cross-cutting: every stage imports it, and it imports nothing of
fxmaps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import torch
from torch import fx

__all__ = [
    "META_KEY",
    "BlockKind",
    "CallKey",
    "Kind",
    "Layout",
    "NodeFacts",
    "Origin",
    "Scope",
    "Shape",
    "ShapeTree",
    "SkipKind",
    "Source",
    "facts",
    "name_of",
    "note",
]

META_KEY = "fxmaps"
"""The key of ``node.meta`` under which a node's :class:`NodeFacts` are kept."""

Shape = tuple[int, ...]
ShapeTree = Shape | tuple["ShapeTree", ...]
"""A tensor's shape, or a tuple of them for nodes that return several tensors."""


class _StrEnum(str, Enum):
    """A ``str`` enum whose ``str()`` is its value (``enum.StrEnum`` needs 3.11)."""

    def __str__(self) -> str:
        return str(self.value)


class Kind(_StrEnum):
    """What a graph node does.

    ``conv`` and ``downsample`` are disjoint: a convolution on the shortcut
    branch of a residual merge is a ``downsample``, every other one a ``conv``.
    """

    CONV = "conv"
    DOWNSAMPLE = "downsample"
    LINEAR = "linear"
    NORM = "norm"
    ACTIVATION = "activation"
    POOL = "pool"
    ADD = "add"
    CONCAT = "concat"
    RESHAPE = "reshape"
    ATTENTION = "attention"
    DROPOUT = "dropout"
    UPSAMPLE = "upsample"
    EMBEDDING = "embedding"
    RECURRENT = "recurrent"
    PARAMETER = "parameter"
    INPUT = "input"
    OUTPUT = "output"
    OTHER = "other"


class BlockKind(_StrEnum):
    """What a block (a module call that groups layers) is."""

    RESIDUAL = "residual"
    SEQUENTIAL = "sequential"


class SkipKind(_StrEnum):
    """What the shortcut branch of a residual merge holds."""

    IDENTITY = "identity"  # nothing, or only norms, activations, dropout, reshapes, nn.Identity
    PROJECTION = "projection"  # learned layers (its convs are downsample convs)
    PARAMETER_FREE = "parameter-free"  # pooling, padding, slicing: no learned layers


class Layout(_StrEnum):
    """Where a node's output keeps its channels.

    ``channels-first`` is ``(N, C, ...)`` (convnets); ``channels-last`` is ``(N, ..., C)``
    (transformer tokens ``(N, L, C)``, Swin's and ConvNeXt's ``(N, H, W, C)``).
    """

    CHANNELS_FIRST = "channels-first"
    CHANNELS_LAST = "channels-last"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Scope:
    """One call of a traced-through module: ``name`` is ``qualname`` or ``qualname_N``."""

    name: str
    qualname: str
    module_type: type


CallKey = tuple[str, int]
"""A module call: the module's qualified path and how many calls of it came before."""


class Source(_StrEnum):
    """Where a node of a captured graph comes from (see :mod:`fxmaps.trace.capture`)."""

    INPUT = "input"
    LEAF = "leaf"
    FX = "fx"
    OP = "op"
    OUTPUT = "output"
    CONSTANT = "constant"


@dataclass(frozen=True)
class Origin:
    """How to produce one node of a captured graph again.

    Attributes:
        source: What kind of thing the node is.
        call: The module call it belongs to (the leaf call itself, the fx region call,
            or the eager call that ran the op); ``None`` for inputs, constants, output.
        local: For an fx node, its name in the region's graph; for an op, its index
            among the ops its eager call ran; for an input, its index among the
            input tensors; for a constant, its attribute. For a tensor picked out
            of what such a node made: ``(that local, (key, ...))``.
    """

    source: Source
    call: CallKey | None = None
    local: str | int | tuple[str | int | None, tuple[Any, ...]] | None = None


@dataclass(frozen=True)
class NodeFacts:
    """Everything fxmaps knows of one node, written by the passes that learn it.

    Attributes:
        name: The public name (``layer1.0.conv1``; ``_1`` for a second call).
        target: The qualified module path of a module call or attribute, the
            function's or method's name otherwise.
        scopes: The enclosing module calls, outermost first.
        hidden: A placeholder for an argument fixed at its default, or a check of one:
            not shown to users.
        opaque: A module call fxmaps did not trace into.
        shape: The output shape (shape propagation), or ``None``.
        kind: What the node does (classification), or ``None`` before it ran.
        layout: Where the output keeps its channels (classification).
        params: How many parameters the node uses, shared ones included (classification).
        macs: Its multiply-accumulates in one forward (``classify/macs.py``; 0 where
            not counted or without shapes).
        nbytes: Bytes of the tensors it outputs (shape propagation), or ``None``.
        block: The innermost residual or sequential block around it (classification).
        region: The eager module call whose Python code ran the node, or ``None``
            for nodes torch.fx traced (capture).
        origin: How a captured node is produced again, or ``None`` for a graph
            symbolic tracing made whole (capture).
        returned_by: The module calls whose return value the node is, innermost
            first (classification).
        dtype: The output's dtype when it is one tensor (shape propagation, the
            capture's run, or an attribute's own), else ``None``.
        alias: The name torchvision's naming convention gives the node where it
            differs from ``name`` (tracing).
    """

    name: str
    target: str
    scopes: tuple[Scope, ...] = ()
    hidden: bool = False
    opaque: bool = False
    shape: ShapeTree | None = None
    kind: Kind | None = None
    layout: Layout = Layout.UNKNOWN
    params: int = 0
    macs: int = 0
    nbytes: int | None = None
    block: str | None = None
    region: str | None = None
    origin: Origin | None = None
    returned_by: tuple[CallKey, ...] = ()
    dtype: torch.dtype | None = None
    alias: str | None = None


def facts(node: fx.Node) -> NodeFacts:
    """The facts written for ``node``; a ``KeyError`` names a node no pass has seen."""
    found = node.meta.get(META_KEY)
    if not isinstance(found, NodeFacts):
        raise KeyError(f"fx node {node.name!r} carries no fxmaps facts (was it traced by fxmaps?)")
    return found


def name_of(node: fx.Node) -> str:
    """The node's public name, or fx's own name for a node fxmaps did not trace."""
    found = node.meta.get(META_KEY)
    return found.name if isinstance(found, NodeFacts) else node.name


def note(node: fx.Node, **changes: Any) -> NodeFacts:
    """Write ``changes`` into ``node``'s facts (creating them when ``name`` and ``target``
    are given) and return the new record."""
    current = node.meta.get(META_KEY)
    updated = (
        replace(current, **changes) if isinstance(current, NodeFacts) else NodeFacts(**changes)
    )
    node.meta[META_KEY] = updated
    return updated
