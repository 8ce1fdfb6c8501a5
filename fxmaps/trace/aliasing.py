"""The one table of what ops do to storage: which compute a fresh tensor, which write in place.

Tracing reads it to decide whether ``x += y`` must stay in place (something still
reads the old ``x``); extraction reads it to find which maps a later in-place op
would overwrite. Unknown ops are assumed to alias their inputs: that costs at
most a copy, never a wrong map.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from fxmaps.facts import Kind

__all__ = [
    "AUGMENTED",
    "fresh_result",
    "is_helper",
    "mutated_input",
    "runs_out_of_place",
]

AUGMENTED: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "__iadd__": (operator.add, operator.iadd),
    "__isub__": (operator.sub, operator.isub),
    "__imul__": (operator.mul, operator.imul),
    "__itruediv__": (operator.truediv, operator.itruediv),
    "__ifloordiv__": (operator.floordiv, operator.ifloordiv),
    "__imod__": (operator.mod, operator.imod),
    "__ipow__": (operator.pow, operator.ipow),
    "__imatmul__": (operator.matmul, operator.imatmul),
    "__iand__": (operator.and_, operator.iand),
    "__ior__": (operator.or_, operator.ior),
    "__ixor__": (operator.xor, operator.ixor),
    "__ilshift__": (operator.lshift, operator.ilshift),
    "__irshift__": (operator.rshift, operator.irshift),
}
"""Augmented assignments: the out-of-place operator fx records, and the in-place one."""

_FRESH_KINDS = frozenset(
    {
        Kind.CONV, Kind.DOWNSAMPLE, Kind.LINEAR, Kind.NORM, Kind.ACTIVATION, Kind.POOL,
        Kind.ADD, Kind.CONCAT, Kind.ATTENTION, Kind.UPSAMPLE, Kind.EMBEDDING, Kind.RECURRENT,
    }
)  # fmt: skip
_FRESH_FUNCTIONS = frozenset(
    {plain for plain, _ in AUGMENTED.values()}
    | {
        operator.neg, torch.add, torch.sub, torch.mul, torch.div, torch.matmul, torch.bmm,
        torch.einsum, torch.where, torch.sum, torch.mean, torch.exp, torch.sqrt, torch.rsqrt,
        torch.abs, torch.clamp, torch.roll, torch.clone, torch.zeros_like, torch.ones_like,
        torch.cumsum, torch.softmax, torch.cat, torch.stack,
    }
)  # fmt: skip
"""Functions whose result never shares storage with an argument."""
_FRESH_METHODS = frozenset(
    {
        "add", "sub", "mul", "div", "matmul", "pow", "neg", "sum", "mean", "exp", "sqrt",
        "rsqrt", "abs", "clamp", "clone", "softmax", "sigmoid", "tanh", "relu", "norm", "amax",
        "max", "min", "std", "var", "roll", "cumsum", "__add__", "__mul__", "__sub__",
        "__truediv__", "__matmul__",
    }
)  # fmt: skip
_INPLACE_OPERATORS = frozenset({inplace for _, inplace in AUGMENTED.values()} | {operator.setitem})
_INPLACE_DUNDERS = frozenset({*AUGMENTED, "__setitem__"})


def fresh_result(node: fx.Node, module: nn.Module | None, kind: Kind | None = None) -> bool:
    """Whether ``node``'s result is known never to share storage with its inputs.

    Learned layers (a module with parameters, or a kind that computes) and the
    arithmetic in the table make new tensors; anything else may return a view or
    an input itself. An in-place op is not fresh (see :func:`mutated_input`).
    """
    if node.op in ("placeholder", "get_attr", "output"):
        return True
    if kind in _FRESH_KINDS:
        return True
    if node.op == "call_module":
        return module is not None and next(module.parameters(), None) is not None
    if node.op == "call_function":
        return node.target in _FRESH_FUNCTIONS
    return node.op == "call_method" and node.target in _FRESH_METHODS


def is_helper(node: fx.Node) -> bool:
    """Whether ``node`` calls a plain Python function kept whole (``torch.fx.wrap``-ed or
    autowrapped): its body is not in the graph, so it may update or return its inputs."""
    return node.op == "call_function" and is_helper_function(node.target)


def is_helper_function(target: Any) -> bool:
    """A plain Python function from outside torch (not a builtin, not torch's own)."""
    if not inspect.isfunction(target):
        return False
    module = getattr(target, "__module__", None) or ""
    return module != "torch" and not module.startswith("torch.")


def mutated_input(node: fx.Node, module: nn.Module | None) -> fx.Node | None:
    """The node whose tensor ``node`` overwrites in place, or ``None``."""
    first = next(iter(node.all_input_nodes), None)
    if node.op == "call_module":
        return first if getattr(module, "inplace", False) is True else None
    if node.op == "call_method":
        inplace = _inplace_name(str(node.target))
    elif node.op == "call_function":
        if is_helper(node):  # may update any tensor it is given, like mvit's `_add_shortcut`
            return first
        name = getattr(node.target, "__name__", "")
        inplace = node.target in _INPLACE_OPERATORS or _inplace_name(name) or _inplace_flag(node)
    else:
        return None
    target = node.args[0] if node.args else None
    return target if inplace and isinstance(target, fx.Node) else None


def runs_out_of_place(node: fx.Node, module: nn.Module | None) -> bool:
    """Whether an in-place ``node`` has an out-of-place twin that computes the same values."""
    if node.op == "call_module":  # activations only: a copy's `training` flag would go stale
        is_activation = type(module).__module__ == "torch.nn.modules.activation"
        return is_activation and isinstance(getattr(module, "inplace", None), bool)
    if node.op == "call_method":
        name = str(node.target)
        return (
            _inplace_name(name) and not name.startswith("__") and hasattr(torch.Tensor, name[:-1])
        )
    return node.op == "call_function" and _inplace_flag(node)


def _inplace_name(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_DUNDERS


def _inplace_flag(node: fx.Node) -> bool:
    """``inplace=True`` given by keyword or by position (``F.relu(x, True)``)."""
    if node.kwargs.get("inplace") is True:
        return True
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bound.arguments.get("inplace") is True
