"""Shape propagation: run the traced graph once and record every node's output shape.

The run happens under ``torch.no_grad`` with the model's buffers saved and put
back afterwards, so BatchNorm running statistics (and anything else a forward
might update) are left exactly as they were, in train or eval mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from fxmaps.errors import ShapeError

__all__ = ["Shape", "ShapeTree", "preserved_state", "propagate_shapes", "shape_of"]

Shape = tuple[int, ...]
ShapeTree = Shape | tuple["ShapeTree", ...]
"""A tensor's shape, or a tuple of them for nodes that return several tensors."""


def shape_of(value: Any) -> ShapeTree | None:
    """The shape of a tensor, the shapes of a tuple or list of tensors, else ``None``."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value:
        shapes = tuple(shape_of(v) for v in value)
        if all(s is not None for s in shapes):
            return shapes  # type: ignore[return-value]
    return None


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, train: bool) -> Iterator[None]:
    """Run a block with ``model`` in the given mode; restore modes and buffers after."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        model.train(train)
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                if buffer.shape == saved.shape:
                    buffer.copy_(saved)
        for module, mode in modes:
            module.training = mode


class _NodeFailed(Exception):
    """Carries a node failure out of ``Interpreter.run`` (which rewrites messages)."""

    def __init__(self, message: str, cause: Exception) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class _ShapeInterpreter(fx.Interpreter):
    def __init__(self, graph_module: fx.GraphModule, names: Mapping[fx.Node, str]) -> None:
        super().__init__(graph_module, garbage_collect_values=True)
        self._names = names
        self.shapes: dict[fx.Node, ShapeTree | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except _NodeFailed:
            raise
        except Exception as err:
            raise _NodeFailed(self._message(n, err), err) from err
        self.shapes[n] = shape_of(result)
        return result

    def _message(self, node: fx.Node, err: Exception) -> str:
        given = [self.shapes.get(a) for a in node.all_input_nodes]
        given_text = ", ".join(str(s) for s in given if s is not None) or "no tensor"
        module = self.module.get_submodule(str(node.target)) if node.op == "call_module" else None
        what = f"{type(module).__name__}" if module is not None else str(node.target)
        expected = _expected_input(module) if module is not None else None
        first_line = (str(err).strip().splitlines() or [""])[0]
        text = f"node {self._names[node]!r} ({what}) failed on input of shape {given_text}"
        if expected:
            text += f"; it expects {expected}"
        return f"{text}. {type(err).__name__}: {first_line}"


def _expected_input(module: nn.Module) -> str | None:
    """What input a common layer expects, in words, for error messages."""
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = len(module.kernel_size)
        spatial = ", ".join(["L", "H", "W"][-dims:] if dims < 3 else ["D", "H", "W"])
        reach = tuple(
            max(d * (k - 1) + 1 - 2 * p, 1)
            for d, k, p in zip(module.dilation, module.kernel_size, _padding(module), strict=True)
        )
        text = f"{module.in_channels} input channels, shape (N, {module.in_channels}, {spatial})"
        if any(r > 1 for r in reach):
            text += f", spatial size at least {reach}"
        return text
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        return f"a spatial size of at least the kernel size {module.kernel_size}"
    if isinstance(module, nn.Linear):
        return f"{module.in_features} input features, shape (..., {module.in_features})"
    if isinstance(module, nn.modules.batchnorm._NormBase) and module.num_features:
        return f"{module.num_features} channels, shape (N, {module.num_features}, ...)"
    if isinstance(module, nn.LayerNorm):
        return f"trailing dimensions {tuple(module.normalized_shape)}"
    return None


def _padding(module: nn.modules.conv._ConvNd) -> Sequence[int]:
    padding = module.padding
    if isinstance(padding, str):
        return [0] * len(module.kernel_size)
    return list(padding)


def propagate_shapes(
    graph_module: fx.GraphModule,
    inputs: Sequence[torch.Tensor],
    names: Mapping[fx.Node, str],
) -> dict[fx.Node, ShapeTree | None]:
    """Run ``graph_module`` on ``inputs`` without gradients and return each node's shape.

    Raises:
        ShapeError: A node failed on the input; the message names the node, the
            shape it was given and, for common layers, the shape it expects.
    """
    interpreter = _ShapeInterpreter(graph_module, names)
    try:
        with torch.no_grad():
            interpreter.run(*inputs)
    except _NodeFailed as failed:
        raise ShapeError(failed.message) from failed.cause
    return interpreter.shapes
