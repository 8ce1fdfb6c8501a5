"""Multiply-accumulate counts of each node, from the shapes of its inputs and output.

A pass over a traced graph module whose shapes were propagated: it writes each
node's ``macs`` fact. What counts is what multiplies and accumulates, the work of
the layers that hold a model's compute:

- convolutions (modules and functions; ``groups`` divide it, dilation and stride
  only change the output's size; transposed convolutions count per input position);
- linears (``nn.Linear``, ``F.linear``, transformers' ``Conv1D``), bias not counted;
- matrix products: ``matmul``/``@``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``, and
  ``einsum`` of two operands (the product of every index's size);
- attention: ``F.scaled_dot_product_attention`` (its two matrix products),
  ``nn.MultiheadAttention`` (input and output projections and the two matrix
  products, the same whether or not its fused eval-mode path runs), and
  torchvision's ``shifted_window_attention`` (Swin).

Everything else counts 0: norms, pooling, activations, element-wise arithmetic and
softmax are memory-bound and small beside these (well under 1% of resnet18's, for
example), and leaving them out keeps the count comparable with torchinfo's
mult-adds and with ``torch.utils.flop_counter.FlopCounterMode`` (whose FLOPs are
twice these MACs). A node without shapes (no example input) counts 0, and so
does an opaque module of a kind not listed here.
"""

from __future__ import annotations

import inspect
import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn

from fxmaps.classify.parameters import registered
from fxmaps.facts import ShapeTree, facts, note

__all__ = ["count_macs", "note_macs"]

_MATMULS = {"matmul", "mm", "bmm"}  # out numel x the first operand's last size
_ADDS_THEN_MATMULS = {"addmm", "baddbmm", "addbmm"}  # the same, of operands 1 and 2
_CONVS = {"conv1d", "conv2d", "conv3d", "convolution"}
_TRANSPOSED_CONVS = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}


def note_macs(module: fx.GraphModule) -> None:
    """Write every node's multiply-accumulate count into its facts."""
    for node in module.graph.nodes:
        called = module.get_submodule(str(node.target)) if node.op == "call_module" else None
        note(node, macs=count_macs(node, called))


def count_macs(node: fx.Node, module: nn.Module | None = None) -> int:
    """The multiply-accumulates of one node (0 where it has none or no shapes are known)."""
    if node.op == "call_module" and isinstance(module, nn.MultiheadAttention):
        return _multihead_attention(node, module)  # its output may hold None: no shape
    out = facts(node).shape
    if out is None:
        return 0
    if node.op == "call_module" and module is not None:
        return _module_macs(node, module, out)
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        if node.target is operator.matmul:
            name = "matmul"
        return _function_macs(node, name, out)
    if node.op == "call_method":
        return _function_macs(node, str(node.target), out)
    return 0


def _module_macs(node: fx.Node, module: nn.Module, out: ShapeTree) -> int:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        kernel = tuple(module.kernel_size)
        return _transposed_conv(_shape(node, 0), module.out_channels // module.groups, kernel)
    if isinstance(module, nn.modules.conv._ConvNd):
        # from the layer's sizes, not its weight (see registered); a lazy conv's are 0
        group_inputs = int(module.in_channels) // int(module.groups)
        return _numel(out) * group_inputs * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return _numel(out) * module.in_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # transformers' linear
        found = registered(module, "weight")
        return _numel(out) * int(found.shape[0]) if _materialized(found) else 0
    return 0


def _function_macs(node: fx.Node, name: str, out: ShapeTree) -> int:
    counters: dict[str, Callable[[fx.Node, ShapeTree], int]] = {
        "linear": lambda n, o: _numel(o) * _last(_shape(n, 0)),
        "einsum": _einsum,
        "scaled_dot_product_attention": _sdpa,
        "shifted_window_attention": _shifted_window_attention,
    }
    if name in _MATMULS:
        return _numel(out) * _last(_shape(node, 0))
    if name in _ADDS_THEN_MATMULS:
        return _numel(out) * _last(_shape(node, 1))
    if name in _CONVS:
        weight = _shape(node, 1)
        return _numel(out) * math.prod(weight[1:]) if weight else 0
    if name in _TRANSPOSED_CONVS:
        weight = _shape(node, 1)  # (in, out / groups, *kernel)
        return _transposed_conv(_shape(node, 0), weight[1], weight[2:]) if weight else 0
    counter = counters.get(name)
    return counter(node, out) if counter is not None else 0


def _transposed_conv(
    given: tuple[int, ...] | None, group_channels: int, kernel: tuple[int, ...]
) -> int:
    """Every input value times a kernel into each output channel of its group."""
    return math.prod(given) * group_channels * math.prod(kernel) if given else 0


def _multihead_attention(node: fx.Node, module: nn.MultiheadAttention) -> int:
    """Projections of query, key and value, the two products per head, the output projection."""
    query, key = _shape(node, 0, "query"), _shape(node, 1, "key")
    if not query or not key:
        return 0
    batch_first = module.batch_first and len(query) == 3
    length = query[1] if batch_first else query[0]
    source = key[1] if batch_first else key[0]
    batch = math.prod(query) // (length * query[-1])
    embed, kdim, vdim = int(module.embed_dim), int(module.kdim), int(module.vdim)
    projections = batch * (length * embed * embed * 2 + source * embed * (kdim + vdim))
    return projections + 2 * batch * length * source * embed


def _sdpa(node: fx.Node, out: ShapeTree) -> int:
    query, key = _shape(node, 0, "query"), _shape(node, 1, "key")
    value = _shape(node, 2, "value")
    if not query or not key or not value:
        return 0
    batch = math.prod(query[:-2])
    return batch * query[-2] * key[-2] * (query[-1] + value[-1])


def _shifted_window_attention(node: fx.Node, out: ShapeTree) -> int:
    """torchvision's Swin attention: windows of the padded map, qkv and output projections."""
    given, qkv = _shape(node, 0), _shape(node, 1)
    window = _argument(node, "window_size", 4, None)
    if not given or not qkv or not isinstance(window, Sequence):
        return 0
    *batch, height, width, channels = given
    rows, columns = int(window[0]), int(window[1])
    padded = math.ceil(height / rows) * rows * math.ceil(width / columns) * columns
    tokens = math.prod(batch) * padded
    per_window = int(window[0]) * int(window[1])
    return tokens * channels * (qkv[0] + channels) + 2 * tokens * per_window * channels


def _einsum(node: fx.Node, out: ShapeTree) -> int:
    """``einsum`` of two operands: the product of the sizes of all the indices it names."""
    equation = node.args[0] if node.args else None
    operands = node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (tuple, list)):
        operands = tuple(operands[0])
    if not isinstance(equation, str) or len(operands) != 2 or "..." in equation:
        return 0
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, operand in zip(inputs, operands, strict=False):
        shape = _shape_of(operand)
        if shape is None or len(shape) != len(letters):
            return 0
        sizes.update(zip(letters, shape, strict=True))
    return math.prod(sizes.values()) if re.fullmatch(r"[a-zA-Z]+", "".join(inputs)) else 0


def _argument(node: fx.Node, name: str, position: int, default: Any) -> Any:
    """An argument given by position or keyword."""
    if name in node.kwargs:
        return node.kwargs[name]
    target = node.target
    if len(node.args) > position:
        return node.args[position]
    if callable(target):
        try:
            parameter = inspect.signature(target).parameters.get(name)
        except (TypeError, ValueError):
            parameter = None
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return default


def _shape(node: fx.Node, position: int, name: str = "") -> tuple[int, ...] | None:
    """The shape of the node's tensor argument at ``position`` (or keyword ``name``)."""
    if len(node.args) > position:
        return _shape_of(node.args[position])
    return _shape_of(node.kwargs.get(name)) if name else None


def _shape_of(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, fx.Node):
        return None
    shape = facts(value).shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return shape  # type: ignore[return-value]


def _numel(shape: ShapeTree) -> int:
    if all(isinstance(d, int) for d in shape):
        return math.prod(shape)  # type: ignore[arg-type]
    return 0  # several outputs: not a layer counted here


def _last(shape: tuple[int, ...] | None) -> int:
    return shape[-1] if shape else 0


def _materialized(weight: Any) -> bool:
    return isinstance(weight, torch.Tensor) and not isinstance(
        weight, nn.parameter.UninitializedParameter
    )
