"""What each node does: kinds for module, function and method calls.

Rules live in three registries (module classes, functions, method names) that
users can extend with :func:`register_module_kind` and
:func:`register_function_kind`, and put back with :func:`reset_kind_rules`.
Module classes match by ``isinstance``, most specific class first, so a
subclass of ``nn.Conv2d`` is a conv without registration.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import fx, nn
from torch.nn.modules import activation, conv, dropout, normalization, pooling

from fxmaps.facts import Kind, note

__all__ = [
    "kind_of_node",
    "note_kinds",
    "register_function_kind",
    "register_module_kind",
    "reset_kind_rules",
]

_MODULE_FAMILIES: tuple[tuple[Any, Kind], ...] = (
    (conv, Kind.CONV),
    (pooling, Kind.POOL),
    (dropout, Kind.DROPOUT),
    (normalization, Kind.NORM),
)

_DEFAULT_MODULES: dict[type[nn.Module], Kind] = {
    nn.MultiheadAttention: Kind.ATTENTION,
    nn.TransformerEncoderLayer: Kind.ATTENTION,
    nn.TransformerDecoderLayer: Kind.ATTENTION,
    nn.TransformerEncoder: Kind.ATTENTION,
    nn.TransformerDecoder: Kind.ATTENTION,
    nn.Transformer: Kind.ATTENTION,
    nn.Linear: Kind.LINEAR,
    nn.Bilinear: Kind.LINEAR,
    nn.modules.batchnorm._NormBase: Kind.NORM,
    torchvision.ops.FrozenBatchNorm2d: Kind.NORM,
    nn.Flatten: Kind.RESHAPE,
    nn.Unflatten: Kind.RESHAPE,
    nn.PixelShuffle: Kind.RESHAPE,
    nn.PixelUnshuffle: Kind.RESHAPE,
    nn.ChannelShuffle: Kind.RESHAPE,
    torchvision.ops.Permute: Kind.RESHAPE,
    nn.Upsample: Kind.UPSAMPLE,
    nn.Embedding: Kind.EMBEDDING,
    nn.EmbeddingBag: Kind.EMBEDDING,
    nn.RNNBase: Kind.RECURRENT,
    nn.RNNCellBase: Kind.RECURRENT,
    torchvision.ops.StochasticDepth: Kind.DROPOUT,
    torchvision.ops.DropBlock2d: Kind.DROPOUT,
    torchvision.ops.DropBlock3d: Kind.DROPOUT,
}

_CONV_FUNCTIONS = (
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    torch.conv1d, torch.conv2d, torch.conv3d, torch.convolution, torchvision.ops.deform_conv2d,
)  # fmt: skip
_NORM_FUNCTIONS = (
    F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm,
    F.rms_norm, torch.batch_norm, torch.layer_norm, torch.group_norm, torch.instance_norm,
)  # fmt: skip
_ACTIVATION_FUNCTIONS = (
    F.relu, F.relu_, F.relu6, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.leaky_relu, F.prelu, F.rrelu, F.glu, F.logsigmoid,
    F.softplus, F.softsign, F.softmax, F.log_softmax, F.softmin, F.sigmoid, F.tanh,
    F.threshold, torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.softmax,
    torch.log_softmax, torch.selu, torch.celu, torch.prelu, torch.rrelu,
)  # fmt: skip
_POOL_FUNCTIONS = (
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.lp_pool1d, F.lp_pool2d, torch.max_pool1d, torch.max_pool2d, torch.max_pool3d,
    torch.avg_pool1d, torch.adaptive_avg_pool1d, torch.adaptive_max_pool1d,
)  # fmt: skip
_RESHAPE_FUNCTIONS = (
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
    torch.unsqueeze, torch.movedim, torch.swapaxes, F.pixel_shuffle, F.pixel_unshuffle,
    torch.channel_shuffle, torch.narrow, torch.chunk, torch.split, torch.unbind,
)  # fmt: skip
_DEFAULT_FUNCTIONS: dict[Callable[..., Any], Kind] = {
    **dict.fromkeys(_CONV_FUNCTIONS, Kind.CONV),
    **dict.fromkeys(_NORM_FUNCTIONS, Kind.NORM),
    **dict.fromkeys(_ACTIVATION_FUNCTIONS, Kind.ACTIVATION),
    **dict.fromkeys(_POOL_FUNCTIONS, Kind.POOL),
    **dict.fromkeys(_RESHAPE_FUNCTIONS, Kind.RESHAPE),
    F.linear: Kind.LINEAR,
    F.bilinear: Kind.LINEAR,
    torch.addmm: Kind.LINEAR,
    operator.add: Kind.ADD,
    operator.iadd: Kind.ADD,
    torch.add: Kind.ADD,
    torch.cat: Kind.CONCAT,
    torch.concat: Kind.CONCAT,
    torch.concatenate: Kind.CONCAT,
    torch.stack: Kind.CONCAT,
    F.scaled_dot_product_attention: Kind.ATTENTION,
    F.multi_head_attention_forward: Kind.ATTENTION,
    F.dropout: Kind.DROPOUT,
    F.dropout1d: Kind.DROPOUT,
    F.dropout2d: Kind.DROPOUT,
    F.dropout3d: Kind.DROPOUT,
    F.alpha_dropout: Kind.DROPOUT,
    torchvision.ops.stochastic_depth: Kind.DROPOUT,
    F.interpolate: Kind.UPSAMPLE,
    F.upsample: Kind.UPSAMPLE,
    F.embedding: Kind.EMBEDDING,
}

_DEFAULT_METHODS: dict[str, Kind] = {
    **dict.fromkeys(("add", "add_", "__add__", "__iadd__"), Kind.ADD),
    **dict.fromkeys(
        ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "softmax", "log_softmax"),
        Kind.ACTIVATION,
    ),
    **dict.fromkeys(
        (
            "view",
            "reshape",
            "flatten",
            "permute",
            "transpose",
            "squeeze",
            "unsqueeze",
            "contiguous",
            "unflatten",
            "movedim",
            "swapaxes",
            "chunk",
            "split",
            "unbind",
            "narrow",
            "view_as",
            "reshape_as",
            "expand",
            "expand_as",
            "t",
        ),
        Kind.RESHAPE,
    ),
}

# Functions and module classes that live in modules fxmaps does not import itself,
# matched by qualified name.
_NAMED_FUNCTIONS: dict[str, Kind] = {
    "torchvision.models.swin_transformer.shifted_window_attention": Kind.ATTENTION,
}
_NAMED_MODULES: dict[str, Kind] = {
    "transformers.pytorch_utils.Conv1D": Kind.LINEAR,
}

_module_rules: dict[type[nn.Module], Kind] = {}
_function_rules: dict[Callable[..., Any], Kind] = {}
_method_rules: dict[str, Kind] = {}
_module_cache: dict[type, Kind] = {}


def register_module_kind(cls: type[nn.Module], kind: Kind | str) -> None:
    """Classify calls of ``cls`` (and its subclasses) as ``kind``.

    Example:
        >>> from torch import nn
        >>> import fxmaps
        >>> class MyConv(nn.Module):
        ...     def forward(self, x):
        ...         return x
        >>> fxmaps.register_module_kind(MyConv, "conv")
        >>> fxmaps.reset_kind_rules()
    """
    _module_rules[cls] = Kind(kind)
    _module_cache.clear()


def register_function_kind(function: Callable[..., Any], kind: Kind | str) -> None:
    """Classify ``call_function`` nodes whose target is ``function`` as ``kind``."""
    _function_rules[function] = Kind(kind)


def reset_kind_rules() -> None:
    """Put the classification registries back to fxmaps's defaults."""
    _module_rules.clear()
    _module_rules.update(_DEFAULT_MODULES)
    _function_rules.clear()
    _function_rules.update(_DEFAULT_FUNCTIONS)
    _method_rules.clear()
    _method_rules.update(_DEFAULT_METHODS)
    _module_cache.clear()


def kind_of_node(node: fx.Node, module: nn.Module | None) -> Kind:
    """The kind of one node, before residual analysis turns some convs into downsample."""
    if node.op == "placeholder":
        return Kind.INPUT
    if node.op == "output":
        return Kind.OUTPUT
    if node.op == "get_attr":
        return Kind.PARAMETER
    if node.op == "call_module" and module is not None:
        return _module_kind(type(module))
    if node.op == "call_method":
        return _method_rules.get(str(node.target), Kind.OTHER)
    if node.op == "call_function":
        return _function_kind(node.target)
    return Kind.OTHER


def _function_kind(function: Any) -> Kind:
    kind = _function_rules.get(function)
    if kind is None:
        qualified = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"
        kind = _NAMED_FUNCTIONS.get(qualified, Kind.OTHER)
    return kind


def _module_kind(cls: type) -> Kind:
    kind = _module_cache.get(cls)
    if kind is None:
        kind = _module_cache[cls] = _lookup_module_kind(cls)
    return kind


def _lookup_module_kind(cls: type) -> Kind:
    for base in cls.__mro__:
        if base in _module_rules:
            return _module_rules[base]
        named = _NAMED_MODULES.get(f"{base.__module__}.{base.__qualname__}")
        if named is not None:
            return named
    for base in cls.__mro__:
        for family, kind in _MODULE_FAMILIES:
            if base.__module__ == family.__name__:
                return kind
        if base.__module__ == activation.__name__:
            return Kind.ACTIVATION
    return Kind.OTHER


reset_kind_rules()


def note_kinds(module: fx.GraphModule) -> None:
    """Write every node's kind into its facts (residual analysis refines convs later)."""
    for node in module.graph.nodes:
        called = module.get_submodule(str(node.target)) if node.op == "call_module" else None
        note(node, kind=kind_of_node(node, called))
