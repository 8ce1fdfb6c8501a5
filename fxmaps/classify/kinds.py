"""The closed sets of names that classification assigns."""

from __future__ import annotations

from enum import Enum

__all__ = ["BlockKind", "Kind", "Layout", "SkipKind"]


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
