"""Shape propagation: run the traced graph once and record every node's output shape.

The run happens under ``torch.no_grad`` with the model's buffers saved and put
back afterwards, so BatchNorm running statistics (and anything else a forward
might update) are left exactly as they were, in train or eval mode.

Shapes can also be found without computing anything, on the meta device
(:func:`meta_values`): on twins of the modules whose tensors are meta tensors,
never on the model itself. That is how extraction estimates its memory before it
runs, and how a too-small input's minimum size is found.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from fxmaps.errors import ShapeError
from fxmaps.facts import ShapeTree, name_of, note

__all__ = [
    "MetaFailure",
    "Propagation",
    "all_finite",
    "dtype_of",
    "first_non_finite",
    "is_too_small",
    "meta_values",
    "minimum_input_size",
    "propagate",
    "shape_of",
]


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


class _Stop(Exception):
    """Ends a run early: every node asked for has its value."""


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
            note(n, shape=self.shapes[n], dtype=dtype_of(result))
        if n.op == "output":
            self.finite = all_finite(result)
        return result

    def _message(self, node: fx.Node, err: Exception) -> str:
        given = [self.shapes.get(a) for a in node.all_input_nodes]
        given_text = ", ".join(str(s) for s in given if s is not None) or "no tensor"
        module = self.module.get_submodule(str(node.target)) if node.op == "call_module" else None
        what = f"{type(module).__name__}" if module is not None else str(node.target)
        expected = _expected_input(module) if module is not None else None
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
        hint = _too_small_hint(graph_module, inputs, train) if is_too_small(failed.cause) else ""
        raise ShapeError(f"{failed.message}{hint}. {failed.detail}") from failed.cause
    return Propagation(interpreter.shapes, interpreter.finite)


# -- input too small --------------------------------------------------------------------------

_TOO_SMALL = re.compile(
    r"too small|can't be greater than actual input size|should be less than the corresponding "
    r"input dimension|sizes should be greater than 0",
    re.IGNORECASE,
)
_LARGEST_SIDE = 8192


def is_too_small(err: BaseException) -> bool:
    """Whether a layer failed because its input's spatial size is below its kernel (or pad)."""
    return bool(_TOO_SMALL.search(str(err)))


def _too_small_hint(graph_module: fx.GraphModule, inputs: Sequence[Any], train: bool) -> str:
    sides = [side for t in _tensors(inputs) if t.dim() >= 3 for side in t.shape[2:]]
    given = "×".join(str(side) for t in _tensors(inputs) if t.dim() >= 3 for side in t.shape[2:])
    size = minimum_input_size(graph_module, inputs, train=train)
    if size is None:
        return f". The input ({given}) is too small for the model; try a larger one"
    needed = "×".join(str(max(side, size)) for side in sides)
    return (
        f". The input ({given}) is too small: the model needs an input of at least {needed}; "
        f"resize it, for example with fxmaps.load_image(path, size={size})"
    )


def minimum_input_size(
    graph_module: fx.GraphModule, inputs: Sequence[Any], *, train: bool = False
) -> int | None:
    """The smallest spatial side ``s`` for which no layer runs out of input, or ``None``.

    Every spatial side (the dimensions after ``(N, C)``) of each input is raised to
    at least ``s``; whether each size goes through is found by running the graph on
    the meta device (shapes only, nothing computed, the model untouched), doubling
    then bisecting. ``None`` when the meta run cannot tell (it fails for another
    reason) or no side up to 8192 is enough. ``inputs`` are the placeholders' values.
    """
    sides = [side for t in _tensors(inputs) if t.dim() >= 3 for side in t.shape[2:]]
    if not sides:
        return None

    def fits(side: int) -> bool:
        resized = [
            _meta_like(t, (*t.shape[:2], *(max(d, side) for d in t.shape[2:])))
            if isinstance(t, torch.Tensor) and t.dim() >= 3
            else t
            for t in inputs
        ]
        try:
            meta_values(graph_module, resized, (), train=train)
        except MetaFailure as failure:
            return not is_too_small(failure.cause)
        return True

    low = min(sides)
    if fits(low):
        return None  # the meta run does not see the failure: do not guess
    high = max(2 * low, 1)
    while not fits(high):
        low, high = high, 2 * high
        if high > _LARGEST_SIDE:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


# -- shapes without computing: the meta device ------------------------------------------------


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
        _meta_like(t, tuple(t.shape)) if isinstance(t, torch.Tensor) else t for t in inputs
    ]
    try:
        with torch.no_grad():
            interpreter.run(*meta_inputs)
    except _Stop:
        pass
    except _NodeFailed as failed:
        raise MetaFailure(failed.node, failed.cause) from failed.cause
    return interpreter.values


def _tensors(values: Sequence[Any]) -> list[torch.Tensor]:
    return [v for v in values if isinstance(v, torch.Tensor)]


def _meta_like(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
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
        return _on_meta(super().fetch_attr(target), self._memo, self._train)


def _on_meta(value: Any, memo: dict[int, Any], train: bool) -> Any:
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
            state[name] = {k: _on_meta(v, memo, train) for k, v in item.items()}
        elif name.startswith(("_forward", "_backward")) and isinstance(item, dict):
            state[name] = type(item)()  # no hooks: the user's hooks never see meta tensors
        elif isinstance(item, torch.Tensor):
            state[name] = _on_meta(item, memo, train)
    state["training"] = train
    return twin


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
