"""In-place ReLUs run out of place into memory the previous call already made resident.

When a chosen map would be overwritten by a later in-place ReLU (every BatchNorm
output of a ResNet), the ReLU runs out of place (:mod:`.aliases`), and its output is
a map of its own. Left to the allocator, that output is fresh memory on every call,
and on the CPU fresh memory is paid for page by page (the kernel maps and zeroes
each one): for resnet50 at batch 8, every node kept, 49 maps and 440 MiB a call.

:class:`ResidentReLU` computes the same values (``clamp_min(x, 0)``, which is how
ATen computes ``relu``) into the memory of its previous output, when no one holds
that output any more: the storage's use count, which every tensor and view of it
raises (a NumPy array holds its tensor), is then the module's own reference alone.
While anything of the previous result is alive, it takes fresh memory, as before,
and keeps that instead. So a result is never overwritten while a user holds any part
of it; the cost is that an extractor keeps, between calls, the memory of the maps
it ran out of place (``FeatureExtractor.release_memory()`` lets it go).

Only on the CPU (CUDA's caching allocator already reuses its memory), without
autograd (``out=`` does not differentiate), and for contiguous (or channels-last)
floating-point tensors;
anything else runs ``torch.relu``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

__all__ = ["ResidentReLU", "release", "resident_relu"]

_FUNCTIONS = frozenset(
    {torch.relu_, torch.nn.functional.relu, torch.nn.functional.relu_, torch.relu}
)
_use_count: Callable[[int], int] | None = getattr(torch._C, "_storage_Use_Count", None)


def resident_relu(node: fx.Node, module: nn.Module | None) -> bool:
    """Whether in-place ``node`` is a ReLU that :class:`ResidentReLU` may run: an
    ``nn.ReLU`` without hooks of its own, ``F.relu(..., inplace=True)``, ``relu_``."""
    if _use_count is None:
        return False
    if node.op == "call_module":
        hooks = ("_forward_hooks", "_forward_pre_hooks")
        return type(module) is nn.ReLU and not any(getattr(module, h, None) for h in hooks)
    if node.op == "call_method":
        return node.target == "relu_"
    return node.op == "call_function" and node.target in _FUNCTIONS


class ResidentReLU(nn.Module):
    """``relu(x)`` out of place, into its previous output's memory when no one holds it.

    Example:
        >>> relu = ResidentReLU()
        >>> first = relu(torch.tensor([-1.0, 2.0]))
        >>> second = relu(torch.tensor([3.0, -4.0]))  # `first` is held: fresh memory
        >>> first.tolist(), second.data_ptr() != first.data_ptr()
        ([0.0, 2.0], True)
        >>> pointer = second.data_ptr()
        >>> del first, second
        >>> relu(torch.tensor([5.0, -6.0])).data_ptr() == pointer  # released: reused
        True
    """

    def __init__(self) -> None:
        super().__init__()
        self._storage: Any = None  # an UntypedStorage, or None
        self._key: tuple[Any, ...] | None = None

    def forward(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._resident(value):
            return torch.relu(value)
        key = (
            tuple(value.shape),
            value.stride(),
            value.dtype,
            value.is_inference(),
            torch.is_inference_mode_enabled(),
        )
        storage = self._storage
        if storage is not None and self._key == key and _held_here_only(storage):
            out = torch.empty(0, dtype=value.dtype).set_(storage, 0, value.shape, value.stride())
        else:
            out = torch.empty_like(value)
            if out.stride() != value.stride():
                return torch.relu(value)
            self._storage, self._key = out.untyped_storage(), key
        return torch.clamp_min(value, 0, out=out)

    @staticmethod
    def _resident(value: Any) -> bool:
        return (
            isinstance(value, torch.Tensor)
            and type(value) is torch.Tensor
            and value.device.type == "cpu"
            and value.is_floating_point()
            and not (value.requires_grad and torch.is_grad_enabled())
            and (value.is_contiguous() or value.is_contiguous(memory_format=torch.channels_last))
        )

    def release(self) -> None:
        """Let go of the memory kept for the next call."""
        self._storage, self._key = None, None


def _held_here_only(storage: Any) -> bool:
    """Whether the module's own reference is the storage's only one (no tensor, no view)."""
    return _use_count is not None and _use_count(storage._cdata) == 1


def release(module: nn.Module) -> None:
    """Let go of the memory every :class:`ResidentReLU` in ``module`` keeps."""
    for child in module.modules():
        if isinstance(child, ResidentReLU):
            child.release()
