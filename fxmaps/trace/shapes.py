"""Shape propagation: run the traced graph once and record every node's output shape.

The run happens under ``torch.no_grad`` with the model's buffers saved and put
back afterwards, so BatchNorm running statistics (and anything else a forward
might update) are left exactly as they were, in train or eval mode.

A node that fails is named with the shape it got and, for common layers, the shape
it expects; for too small an input, with the smallest input that fits
(:mod:`.minimum`, on the meta device: :mod:`.meta`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from fxmaps.errors import MemoryLimitError, ShapeError
from fxmaps.facts import ShapeTree, name_of, note
from fxmaps.trace.minimum import input_minimum, is_too_small, too_small_hint

__all__ = [
    "Propagation",
    "all_finite",
    "bytes_of",
    "dtype_of",
    "first_non_finite",
    "is_allocation_failure",
    "propagate",
    "shape_of",
]


def bytes_of(value: Any) -> int | None:
    """Bytes of the tensors in ``value`` (a tensor, or tuples and lists of them), else ``None``."""
    tensors = _tensors_in(value)
    if not tensors:
        return None
    return sum(t.numel() * t.element_size() for t in tensors)


def dtype_of(value: Any) -> torch.dtype | None:
    """The dtype of a tensor, ``None`` for anything else."""
    return value.dtype if isinstance(value, torch.Tensor) else None


def shape_of(value: Any) -> ShapeTree | None:
    """The shape of a tensor, the shapes of a tuple or list of tensors, else ``None``."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value:
        shapes = tuple(shape_of(v) for v in value)
        if all(s is not None for s in shapes):
            return shapes  # type: ignore[return-value]
    return None


class _NodeFailed(Exception):
    """Carries a node failure out of ``Interpreter.run`` (which rewrites messages)."""

    def __init__(self, node: fx.Node, cause: Exception, message: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.cause = cause
        self.message = message
        first_line = (str(cause).strip().splitlines() or [""])[0]
        self.detail = f"{type(cause).__name__}: {first_line}"


class _ShapeInterpreter(fx.Interpreter):
    def __init__(self, graph_module: fx.GraphModule, record: bool) -> None:
        super().__init__(graph_module, garbage_collect_values=True)
        self._record = record
        self.shapes: dict[fx.Node, ShapeTree | None] = {}
        self.finite = True

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except _NodeFailed:
            raise
        except Exception as err:
            raise _NodeFailed(n, err, self._message(n, err)) from err
        self.shapes[n] = shape_of(result)
        if self._record:
            note(n, shape=self.shapes[n], nbytes=bytes_of(result), dtype=dtype_of(result))
        if n.op == "output":
            self.finite = all_finite(result)
        return result

    def _message(self, node: fx.Node, err: Exception) -> str:
        given = [self.shapes.get(a) for a in node.all_input_nodes]
        given_text = ", ".join(str(s) for s in given if s is not None) or "no tensor"
        module = self.module.get_submodule(str(node.target)) if node.op == "call_module" else None
        what = f"{type(module).__name__}" if module is not None else str(node.target)
        expected = _expected_input(module, err) if module is not None else None
        name = name_of(node)
        text = f"node {name!r} ({what}) failed on input of shape {given_text}"
        if expected:
            text += f"; it expects {expected}"
        return text


def all_finite(value: Any) -> bool:
    """Whether every floating-point tensor in ``value`` (a tensor, tuple, list) is finite."""
    tensors = [t for t in _tensors_in(value) if t.is_floating_point() or t.is_complex()]
    tensors = [t for t in tensors if t.device.type != "meta" and t.numel()]
    if not tensors:
        return True
    flags = torch.stack([torch.isfinite(t).all().to(tensors[0].device) for t in tensors])
    return bool(flags.all())


def _tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors_in(v)]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors_in(v)]
    return []


def is_allocation_failure(err: BaseException) -> bool:
    """Whether ``err`` is memory running out (an allocator's error), not a wrong input."""
    text = str(err)
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate" in text


_CHANNELS = re.compile(r"channels|running_(mean|var) should contain")
_RANK = re.compile(r"Expected \d+D \(unbatched\) or \d+D \(batched\) input")
_FEATURES = re.compile(r"shapes cannot be multiplied")
_NORMALIZED = re.compile(r"normalized_shape")


def _expected_input(module: nn.Module, err: BaseException) -> str | None:
    """What input a common layer expects, in words, for error messages: only the facts
    that bear on ``err`` (channels for a channel mismatch, the number of dimensions for a
    rank mismatch, the kernel's reach for too small an input; nothing for memory running
    out or an error the layer's facts do not explain)."""
    text = str(err)
    if is_allocation_failure(err):
        return None
    if isinstance(module, nn.modules.conv._ConvNd):
        return _expected_by_conv(module, text, too_small=is_too_small(err))
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        if is_too_small(err):
            return f"a spatial size of at least the kernel size {module.kernel_size}"
    elif isinstance(module, nn.Linear) and _FEATURES.search(text):
        return f"{module.in_features} input features, shape (..., {module.in_features})"
    elif isinstance(module, nn.modules.batchnorm._NormBase) and module.num_features:
        if _CHANNELS.search(text):
            return f"{module.num_features} channels, shape (N, {module.num_features}, ...)"
    elif isinstance(module, nn.LayerNorm) and _NORMALIZED.search(text):
        return f"trailing dimensions {tuple(module.normalized_shape)}"
    return None


def _expected_by_conv(module: nn.modules.conv._ConvNd, text: str, *, too_small: bool) -> str | None:
    dims = len(module.kernel_size)
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(dims, "...")
    shape = f"shape (N, {module.in_channels}, {spatial})"
    reach = tuple(
        max(d * (k - 1) + 1 - 2 * p, 1)
        for d, k, p in zip(module.dilation, module.kernel_size, _padding(module), strict=True)
    )
    size = f"spatial size at least {reach}" if any(r > 1 for r in reach) else ""
    if _RANK.search(text):
        return f"{dims + 2} dimensions (or {dims + 1} for one sample), {shape}"
    if _CHANNELS.search(text):
        return f"{module.in_channels} input channels, {shape}" + (f", {size}" if size else "")
    return f"{shape}, {size}" if too_small and size else None


def _padding(module: nn.modules.conv._ConvNd) -> Sequence[int]:
    padding = module.padding
    if isinstance(padding, str):
        return [0] * len(module.kernel_size)
    return list(padding)


@dataclass(frozen=True)
class Propagation:
    """What one run of the graph found: each node's output shape, and whether the output
    is finite (no NaN or inf)."""

    shapes: dict[fx.Node, ShapeTree | None]
    finite: bool


def propagate(
    graph_module: fx.GraphModule,
    inputs: Sequence[Any],
    *,
    train: bool = False,
    record: bool = False,
) -> Propagation:
    """Run ``graph_module`` on ``inputs`` without gradients; each node's shape, and finiteness.

    ``train`` is the mode the graph runs in, used only to find the minimum input
    size (on the meta device) when a node fails because the input is too small.
    With ``record``, each node's shape is written into its facts (the analysis
    pass); without, the run only checks (explaining a failure elsewhere).

    Raises:
        ShapeError: A node failed on the input; the message names the node, the
            shape it was given and, for common layers, the shape it expects. When
            the input is too small (a pool or conv has less than its kernel left),
            it says the smallest input size that goes through.
    """
    interpreter = _ShapeInterpreter(graph_module, record)
    try:
        with torch.no_grad():
            interpreter.run(*inputs)
    except _NodeFailed as failed:
        cause = failed.cause
        if is_allocation_failure(cause):
            raise MemoryLimitError(
                f"{failed.message.replace(' failed on ', ' ran out of memory on ', 1)}: "
                f"{failed.detail}; try a smaller input or batch"
            ) from cause
        hint = ""
        if is_too_small(cause):
            hint = too_small_hint(inputs, input_minimum(graph_module, inputs, train=train), cause)
        raise ShapeError(f"{failed.message}{hint}. {failed.detail}") from failed.cause
    return Propagation(interpreter.shapes, interpreter.finite)


# -- where NaN and inf come from --------------------------------------------------------------


class _FirstNonFinite(fx.Interpreter):
    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.op not in ("placeholder", "output") and not all_finite(result):
            raise _NodeFailed(n, ValueError("non-finite"))
        return result


def first_non_finite(graph_module: fx.GraphModule, inputs: Sequence[Any]) -> str | None:
    """The name of the first node whose output holds NaN or inf (one more forward pass)."""
    try:
        with torch.no_grad():
            _FirstNonFinite(graph_module, garbage_collect_values=True).run(*inputs)
    except _NodeFailed as found:
        return name_of(found.node)
    return None
