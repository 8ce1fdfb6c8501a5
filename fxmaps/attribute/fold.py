"""Batch norms folded into the convolutions before them, for Score-CAM's masked runs.

Score-CAM runs the whole graph once per channel of the node (hundreds of runs), in
inference only. A batch norm in eval mode is an affine map per channel, so a
convolution whose output goes to it alone can carry it in its own weight and bias
(:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`): one pass over the feature map
instead of two. The graph knows which convolution feeds which norm, so the fold is
exact up to rounding, and it is made on a copy: the user's model and its graph are
never changed.

A pair is folded only when nothing could tell: the norm uses its running statistics
(eval mode, ``track_running_stats``), both are plain torch layers (no subclass, no
parametrization), neither has hooks, and the convolution's output goes to the norm
alone.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, cast

from torch import fx, nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

if TYPE_CHECKING:
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.conv import _ConvNd

__all__ = ["folded"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def folded(module: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``module`` with each foldable convolution and batch norm as one
    convolution; ``module`` itself when there is none. The copy shares the model's
    layers; only the folded convolutions are new."""
    pairs = [(n, c) for n in module.graph.nodes if (c := _foldable(module, n)) is not None]
    if not pairs:
        return module
    result = fx.GraphModule(module, copy.deepcopy(module.graph), type(module).__name__)
    nodes = {n.name: n for n in result.graph.nodes}
    for i, (norm_node, conv_node) in enumerate(pairs):
        name = f"fxmaps_folded_{i}"
        conv = cast("_ConvNd", _module(module, conv_node))
        norm = cast("_BatchNorm", _module(module, norm_node))
        result.add_submodule(name, fuse_conv_bn_eval(conv, norm))
        nodes[conv_node.name].target = name
        nodes[norm_node.name].replace_all_uses_with(nodes[conv_node.name])
        result.graph.erase_node(nodes[norm_node.name])
    result.recompile()
    return result


def _foldable(module: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The convolution node ``node`` (a batch norm) can be folded into, if any."""
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    source, norm = node.args[0], _module(module, node)
    if type(norm) not in _NORMS or not isinstance(source, fx.Node):
        return None
    if source.op != "call_module" or len(source.users) != 1:
        return None
    conv = _module(module, source)
    if type(conv) not in _CONVS:
        return None
    running = getattr(norm, "running_mean", None) is not None
    uses_running = running and not (norm.training or conv.training)
    plain = not any(_hooked(m) or parametrize.is_parametrized(m) for m in (conv, norm))
    return source if uses_running and plain else None


def _module(module: fx.GraphModule, node: fx.Node) -> nn.Module:
    return module.get_submodule(str(node.target))


def _hooked(module: nn.Module) -> bool:
    hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks)
    return any(len(h) for h in hooks) or bool(getattr(module, "_backward_pre_hooks", None))
