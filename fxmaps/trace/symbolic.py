"""fxmaps's ``torch.fx.Tracer``: torchvision's node names, checks, item and augmented assignment.

Compared with a plain ``fx.Tracer`` it:

* names every node as torchvision's ``create_feature_extractor`` does, and writes
  the name and target into the node's facts (``node.meta``) as it creates it;
* traces into composite ``torchvision.ops`` modules (``Conv2dNormActivation``,
  ``SqueezeExcitation``, ``MLP``) so every conv and linear call is a node;
* records a branch that only raises (``assert``, ``if bad: raise``) as a
  ``torch._assert`` check instead of failing on it;
* records ``x[index] = value``, and makes ``x += y`` in place where anything still
  reads the old ``x`` (fx records ``x = x + y``), through its own Proxy subclass
  (:meth:`fx.Tracer.proxy`, fx's extension point; ``fx.Proxy`` itself is untouched);
* gives helpers recorded as one call fresh copies of their list arguments;
* remembers the first error that leaves a module call, with the stack of module
  calls, and the value whose use failed (in ``if``, ``for``, ``len()``, ``range()``),
  for the fallback policy and its diagnosis to read.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torchvision.ops
from torch import fx, nn

from fxmaps.facts import note
from fxmaps.trace.aliasing import AUGMENTED, fresh_result, is_helper_function
from fxmaps.trace.autowrap import Patch, holds_list, patched_globals, with_fresh_lists
from fxmaps.trace.branches import check_message, raising_outcome
from fxmaps.trace.naming import Namer

__all__ = ["SymbolicTracer", "target_name"]

_TV_OPS_MODULES: tuple[type[nn.Module], ...] = tuple(
    obj
    for _, obj in inspect.getmembers(torchvision.ops, inspect.isclass)
    if issubclass(obj, nn.Module)
)
_TV_OPS_FUNCTIONS: tuple[Callable[..., Any], ...] = tuple(
    obj for _, obj in inspect.getmembers(torchvision.ops, inspect.isfunction)
)

ModuleStack = tuple[str, ...]


class _Proxy(fx.Proxy):
    """A proxy that records item assignment and augmented assignment."""

    tracer: SymbolicTracer

    def __setitem__(self, key: Any, value: Any) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __len__(self) -> int:
        return int(self.tracer.blamed_on(self, "len", fx.Proxy.__len__))

    def __index__(self) -> int:
        # range(x.shape[0]), [...][n]: Python's own error, with the value noted
        return int(self.tracer.blamed_on(self, "index", _not_an_integer))


def _not_an_integer(proxy: fx.Proxy) -> int:
    raise TypeError(f"'{type(proxy).__name__}' object cannot be interpreted as an integer")


def _augmented(
    plain: Callable[[Any, Any], Any], inplace: Callable[[Any, Any], Any]
) -> Callable[[_Proxy, Any], fx.Proxy]:
    def method(self: _Proxy, other: Any) -> fx.Proxy:
        proxy = self.tracer.create_proxy("call_function", plain, (self, other), {})
        self.tracer.augmented[proxy.node] = inplace
        return proxy

    return method


for _name, (_plain, _inplace) in AUGMENTED.items():
    setattr(_Proxy, _name, _augmented(_plain, _inplace))


class SymbolicTracer(fx.Tracer):
    """One symbolic trace of a model with the given leaves, autowrapped functions and
    helper patches (see the module docstring)."""

    trace_asserts = True

    def __init__(
        self,
        *,
        leaf_types: tuple[type[nn.Module], ...],
        leaf_names: frozenset[str],
        autowrap_functions: tuple[Callable[..., Any], ...],
        patches: tuple[Patch, ...],
    ) -> None:
        super().__init__(
            autowrap_modules=(math,),
            autowrap_functions=autowrap_functions + _TV_OPS_FUNCTIONS,
            param_shapes_constant=True,
        )
        self._leaf_types = leaf_types
        self._wrapped = frozenset(autowrap_functions + _TV_OPS_FUNCTIONS)
        self._leaf_names = leaf_names
        self._patches = patches
        self._stack: list[str] = []
        self._namer = Namer()
        self._named_modules = False
        self.failure: tuple[BaseException, ModuleStack] | None = None
        """The first error seen leaving a module call, and the module calls it left."""
        self.augmented: dict[fx.Node, Callable[[Any, Any], Any]] = {}
        """Nodes recorded for ``a += b`` (as ``a + b``), with their in-place operator."""
        self.swallowed: tuple[BaseException, ModuleStack] | None = None
        self.blamed: tuple[BaseException, str, fx.Node] | None = None
        """The last error raised on using a traced value as Python would (``"bool"``,
        ``"iter"``, ``"len"``, ``"index"``), and that value's node."""

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self._leaf_names or isinstance(m, self._leaf_types):
            return True
        if isinstance(m, torch.jit.ScriptModule):  # compiled code: no Python forward to trace
            return True
        childless = next(m.children(), None) is None
        if isinstance(m, _TV_OPS_MODULES):
            # Atomic ops modules (FrozenBatchNorm2d, StochasticDepth, Permute, ...)
            # stay one node; composite ones are traced into.
            return childless
        if childless and (_known_leaf(type(m)) or _computes_as_torch_nn(type(m))):
            return True
        return bool(super().is_leaf_module(m, module_qualified_name))

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        self._stack.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as err:
            if self.failure is None or self.failure[0] is not err:
                self.failure = (err, tuple(self._stack))
            raise
        finally:
            self._stack.pop()

    def create_node(
        self,
        kind: str,
        target: Any,
        args: Any,
        kwargs: Any,
        name: str | None = None,
        type_expr: Any | None = None,
    ) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if not self._named_modules:
            self._namer.set_modules(path for path, _ in self.root.named_modules())
            self._named_modules = True
        public, alias = self._namer.name(self._stack[-1] if self._stack else "", node)
        note(node, name=public, target=target_name(node), alias=alias)
        return node

    def to_bool(self, obj: fx.Proxy) -> bool:
        # A branch that only raises is a check (`assert`, `if bad: raise`): record it
        # as torch._assert and take the other branch, for every Python version.
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame and frame.f_back else None
        raising = raising_outcome(caller) if caller is not None else None
        if caller is None or raising is None:
            return bool(self._noted(super().to_bool, obj, "bool"))
        holds = self.create_proxy("call_function", operator.not_, (obj,), {}) if raising else obj
        self.create_proxy("call_function", torch._assert, (holds, check_message(caller)), {})
        return not raising

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        return iter(self._noted(super().iter, obj, "iter"))

    def _noted(self, method: Callable[[fx.Proxy], Any], obj: fx.Proxy, use: str) -> Any:
        """``method(obj)``, noting the first error it raises with the module stack.

        fx's TraceError is a ValueError: a model's own ``except ValueError`` (or
        ``except Exception``) can swallow it and trace its fallback branch, a graph
        that is silently wrong. A noted error fails the trace even then.
        """
        try:
            return self.blamed_on(obj, use, method)
        except Exception as err:
            if self.swallowed is None:
                self.swallowed = (err, tuple(self._stack))
            raise

    def blamed_on(self, obj: fx.Proxy, use: str, method: Callable[[fx.Proxy], Any]) -> Any:
        """``method(obj)``; an error it raises is blamed on ``obj``'s node, used as ``use``."""
        try:
            return method(obj)
        except Exception as err:
            self.blamed = (err, use, obj.node)
            raise

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with patched_globals(self._patches):
            graph = super().trace(root, concrete_args)
        if self.swallowed is not None:
            self.failure = self.swallowed
            raise self.swallowed[0]
        position = {node: i for i, node in enumerate(graph.nodes)} if self.augmented else {}
        for node, inplace in self.augmented.items():
            if _observed_after(node, root, position):
                node.target = inplace
                note(node, target=target_name(node))
        for node in graph.nodes:
            wrapped = node.op == "call_function" and node.target not in self._wrapped
            if wrapped and is_helper_function(node.target) and holds_list((node.args, node.kwargs)):
                node.target = with_fresh_lists(node.target)
        return graph


_KNOWN_LEAVES = frozenset({"transformers.pytorch_utils.Conv1D"})
"""Layers of other libraries that are one layer (a linear with its weight transposed)."""


def _known_leaf(cls: type) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in _KNOWN_LEAVES for c in cls.__mro__)


def _computes_as_torch_nn(cls: type) -> bool:
    """A subclass of a torch.nn layer that keeps its ``forward`` (torchvision's
    ``Conv3DSimple``): it computes what that layer does, so it is one node like it."""
    for base in cls.__mro__[1:]:
        if base.__module__.startswith(("torch.nn.", "torch.ao.nn.")):
            plain = base is not nn.Module and not issubclass(base, _CONTAINERS)
            return plain and getattr(cls, "forward", None) is getattr(base, "forward", None)
    return False


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def target_name(node: fx.Node) -> str:
    """What a node calls: a module path or attribute, a function's or method's name."""
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def _observed_after(node: fx.Node, root: nn.Module, position: Mapping[fx.Node, int]) -> bool:
    """Whether anything reads, after ``node``, the tensor that ``a += b`` updates.

    Follows storage that may be shared: through ops that may return a view or the
    tensor itself (anything not known to compute a fresh tensor), upwards and
    downwards. Graph inputs and module attributes are read by their owner later.
    """
    start = node.args[0]
    if not isinstance(start, fx.Node):
        return False
    seen = {start}
    todo = [start]
    while todo:
        current = todo.pop()
        if current.op in ("placeholder", "get_attr"):
            return True
        users = [user for user in current.users if user is not node]
        if any(position[user] > position[node] for user in users):
            return True
        related = [user for user in users if _may_alias(user, root)]
        if _may_alias(current, root):
            related += current.all_input_nodes
        for other in related:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return False


def _may_alias(node: fx.Node, root: nn.Module) -> bool:
    module = root.get_submodule(str(node.target)) if node.op == "call_module" else None
    return not fresh_result(node, module)
