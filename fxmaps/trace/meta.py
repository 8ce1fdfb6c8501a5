"""Shapes without computing: the graph, or the model, on the meta device.

:func:`meta_values` runs a graph on twins of the model's modules whose parameters and
buffers are meta tensors (:func:`meta_twin`), never on the model itself: shapes and
dtypes, nothing computed, no hooks called. That is how extraction estimates its
memory before it runs, and how a too small input's minimum size is found
(:mod:`.minimum`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn

__all__ = ["MetaFailure", "meta_like", "meta_twin", "meta_values"]


class _NodeFailed(Exception):
    def __init__(self, node: fx.Node, cause: Exception) -> None:
        super().__init__(str(cause))
        self.node = node
        self.cause = cause


class _Stop(Exception):
    """Ends a run early: every node asked for has its value."""


class MetaFailure(Exception):
    """A node failed while the graph ran on the meta device."""

    def __init__(self, node: fx.Node, cause: Exception) -> None:
        super().__init__(f"{node.name}: {cause}")
        self.node = node
        self.cause = cause


def meta_values(
    graph_module: fx.GraphModule,
    inputs: Sequence[Any],
    wanted: Iterable[fx.Node],
    *,
    train: bool = False,
) -> dict[fx.Node, Any]:
    """The outputs of the ``wanted`` nodes as meta tensors (shapes and dtypes, no values).

    The graph runs on copies of the model's modules whose parameters and buffers
    are meta tensors and which have no hooks, so nothing is computed and the
    model itself is neither run nor changed. The run stops once every wanted
    node has its value (with none wanted, it runs to the end).

    Raises:
        MetaFailure: A node failed (a genuine shape error, or code that needs real
            values or makes tensors on the CPU); ``.node`` and ``.cause`` say which.
    """
    interpreter = _MetaInterpreter(graph_module, set(wanted), train)
    meta_inputs = [
        meta_like(t, tuple(t.shape)) if isinstance(t, torch.Tensor) else t for t in inputs
    ]
    try:
        with torch.no_grad():
            interpreter.run(*meta_inputs)
    except _Stop:
        pass
    except _NodeFailed as failed:
        raise MetaFailure(failed.node, failed.cause) from failed.cause
    return interpreter.values


def meta_like(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A meta tensor of ``tensor``'s dtype and the given shape."""
    return torch.empty(shape, dtype=tensor.dtype, device="meta")


class _MetaInterpreter(fx.Interpreter):
    def __init__(self, graph_module: fx.GraphModule, wanted: set[fx.Node], train: bool) -> None:
        super().__init__(graph_module, garbage_collect_values=True)
        self._wanted = wanted
        self._train = train
        self._memo: dict[int, Any] = {}
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except (_NodeFailed, _Stop):
            raise
        except Exception as err:
            raise _NodeFailed(n, err) from err
        if n in self._wanted:
            self.values[n] = result
            if len(self.values) == len(self._wanted):
                raise _Stop
        return result

    def fetch_attr(self, target: str) -> Any:
        return meta_twin(super().fetch_attr(target), self._memo, self._train)


def meta_twin(value: Any, memo: dict[int, Any], train: bool) -> Any:
    """A meta twin of a tensor or module (memoised, so shared weights stay shared)."""
    if not isinstance(value, (torch.Tensor, nn.Module)):
        return value
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, torch.Tensor):
        memo[key] = value.detach().to("meta")
        return memo[key]
    twin = copy.copy(value)  # shares nothing that is changed below
    memo[key] = twin
    state = twin.__dict__
    for name, item in list(state.items()):
        if name in ("_parameters", "_buffers", "_modules"):
            state[name] = {k: meta_twin(v, memo, train) for k, v in item.items()}
        elif name.startswith(("_forward", "_backward")) and isinstance(item, dict):
            state[name] = type(item)()  # no hooks: the user's hooks never see meta tensors
        elif isinstance(item, torch.Tensor):
            state[name] = meta_twin(item, memo, train)
    state["training"] = train
    return twin
