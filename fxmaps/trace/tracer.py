"""Symbolic tracing with torch.fx: node names, leaf modules and the auto-leaf fallback.

Nodes are named the way torchvision's ``create_feature_extractor`` names them
(``layer1.0.conv1``, ``layer1.0.add``, ``_1`` for a second call), but fxmaps
traces into composite ``torchvision.ops`` modules (``Conv2dNormActivation``,
``SqueezeExcitation``, ``MLP``) so every conv and linear call is a node.

Where plain torch.fx gives up or records the wrong thing, the tracer:

* records a branch that only raises (``assert``, ``if bad: raise``) as a
  ``torch._assert`` check instead of failing on it;
* records ``x[index] = value``, and makes ``x += y`` in place where anything
  still reads the old ``x`` (fx records ``x = x + y``);
* gives helpers recorded as one call fresh copies of their list arguments.

When tracing still fails, :func:`trace` first autowraps the plain helper function
that failed (shape arithmetic with ``max``/``int``/``len``; a function timm
registers as not traceable is preferred), then makes the innermost failing
submodule a leaf (every instance at once for a class timm registers), and
retries; a torch.nn module that fails in its own ``forward`` is one node. What
became opaque is reported.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import FunctionType
from typing import Any

import torch
import torchvision.ops
from torch import fx, nn

from fxmaps.errors import InputError, TraceError
from fxmaps.trace.diagnose import (
    Failure,
    Helper,
    Patch,
    Untraceable,
    check_message,
    diagnose,
    known_untraceable,
    patch_list,
    patched_globals,
    raising_outcome,
    trace_error_message,
)

__all__ = ["LeafSpec", "OpaqueModule", "Scope", "Traced", "trace"]

LeafSpec = type[nn.Module] | nn.Module | str
"""A leaf module given by class, by instance or by qualified name."""

_SETITEM = "__setitem__"
_AUGMENTED: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
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
_FRESH_FUNCTIONS = frozenset(
    {plain for plain, _ in _AUGMENTED.values()} | {operator.neg, torch.cat, torch.stack}
)
"""Functions whose result never shares storage with an argument."""
_SUFFIX = re.compile(r"(.+)_[0-9]+")
_SIMPLE_DEFAULTS = (type(None), bool, int, float, str)

_RESERVED = frozenset(dir(fx.GraphModule)) | frozenset(
    vars(fx.GraphModule(nn.Module(), fx.Graph()))
)
"""Names a submodule or attribute cannot have on a ``GraphModule`` (``meta``, ``graph``, ...)."""

_TV_OPS_MODULES: tuple[type[nn.Module], ...] = tuple(
    obj
    for _, obj in inspect.getmembers(torchvision.ops, inspect.isclass)
    if issubclass(obj, nn.Module)
)
_TV_OPS_FUNCTIONS: tuple[Callable[..., Any], ...] = tuple(
    obj for _, obj in inspect.getmembers(torchvision.ops, inspect.isfunction)
)


@dataclass(frozen=True)
class Scope:
    """One call of a traced-through module: ``name`` is ``qualname`` or ``qualname_N``."""

    name: str
    qualname: str
    module_type: type


@dataclass(frozen=True)
class OpaqueModule:
    """A submodule traced as a single node, and why."""

    name: str
    module_type: str
    reason: str
    location: str


@dataclass(frozen=True)
class Traced:
    """What tracing produced: the graph module and what fxmaps knows of each node."""

    graph_module: fx.GraphModule
    names: dict[fx.Node, str]
    scopes: dict[fx.Node, tuple[Scope, ...]]
    hidden: frozenset[fx.Node]
    opaque: tuple[OpaqueModule, ...]
    autowrapped: tuple[str, ...]
    targets: dict[fx.Node, str]
    """Qualified names in the model of ``call_module`` and ``get_attr`` targets."""


class _Namer:
    """torchvision's node naming, with a dictionary instead of a backwards scan."""

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}

    def name(self, scope: str, node: fx.Node) -> str:
        base = scope if node.op == "call_module" else f"{scope}.{node.name}" if scope else node.name
        match = _SUFFIX.fullmatch(base)
        if match:
            base = match.group(1)
        previous = self._latest.get(base)
        if previous is None:
            name = base
        else:
            postfix = previous[len(base) :]
            name = f"{base}_{int(postfix[1:]) + 1 if postfix else 1}"
        self._latest[name] = name
        match = _SUFFIX.fullmatch(name)
        if match:
            self._latest[match.group(1)] = name
        return name


class _Tracer(fx.Tracer):
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
        self._namer = _Namer()
        self.node_names: dict[fx.Node, str] = {}
        self.failure: tuple[BaseException, tuple[str, ...]] | None = None
        self.augmented: dict[fx.Node, Callable[[Any, Any], Any]] = {}
        """Nodes recorded for ``a += b`` (as ``a + b``), with their in-place operator."""
        self.swallowed: tuple[BaseException, tuple[str, ...]] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self._leaf_names or isinstance(m, self._leaf_types):
            return True
        if isinstance(m, _TV_OPS_MODULES):
            # Atomic ops modules (FrozenBatchNorm2d, StochasticDepth, Permute, ...)
            # stay one node; composite ones are traced into.
            return next(m.children(), None) is None
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
        self.node_names[node] = self._namer.name(self._stack[-1] if self._stack else "", node)
        return node

    def to_bool(self, obj: fx.Proxy) -> bool:
        # A branch that only raises is a check (`assert`, `if bad: raise`): record it
        # as torch._assert and take the other branch, for every Python version.
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame and frame.f_back else None
        raising = raising_outcome(caller) if caller is not None else None
        if caller is None or raising is None:
            return bool(self._noted(super().to_bool, obj))
        holds = self.create_proxy("call_function", operator.not_, (obj,), {}) if raising else obj
        self.create_proxy("call_function", torch._assert, (holds, check_message(caller)), {})
        return not raising

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        return iter(self._noted(super().iter, obj))

    def _noted(self, method: Callable[[fx.Proxy], Any], obj: fx.Proxy) -> Any:
        """``method(obj)``, noting the first error it raises with the module stack.

        fx's TraceError is a ValueError: a model's own ``except ValueError`` (or
        ``except Exception``) can swallow it and trace its fallback branch, a graph
        that is silently wrong. A noted error fails the trace even then.
        """
        try:
            return method(obj)
        except Exception as err:
            if self.swallowed is None:
                self.swallowed = (err, tuple(self._stack))
            raise

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with patched_globals(self._patches), _proxy_assignments():
            graph = super().trace(root, concrete_args)
        if self.swallowed is not None:
            self.failure = self.swallowed
            raise self.swallowed[0]
        position = {node: i for i, node in enumerate(graph.nodes)} if self.augmented else {}
        for node, inplace in self.augmented.items():
            if _observed_after(node, root, position):
                node.target = inplace
        for node in graph.nodes:
            helper = node.op == "call_function" and node.target not in self._wrapped
            if helper and _is_helper(node.target) and _holds_list((node.args, node.kwargs)):
                node.target = _with_fresh_lists(node.target)
        return graph


def _is_helper(target: Any) -> bool:
    """A plain Python function recorded as one call (``torch.fx.wrap``-ed or autowrapped)."""
    package = getattr(target, "__module__", "").partition(".")[0]
    return isinstance(target, FunctionType) and package not in ("torch", "operator", "math")


def _holds_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    if isinstance(value, (tuple, dict)):
        return any(_holds_list(v) for v in (value.values() if isinstance(value, dict) else value))
    return False


@functools.cache
def _with_fresh_lists(function: FunctionType) -> Callable[..., Any]:
    """``function`` given fresh copies of its list arguments at every call.

    fx stores list arguments as immutable lists in the graph; the generated code
    passes fresh list literals, but an ``fx.Interpreter`` (shape propagation) passes
    those lists, and a helper that updates a list it was given (torchvision's
    ``_get_window_and_shift_size``, which the model calls with fresh copies) fails.
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*_fresh(args), **_fresh(kwargs))

    return call


def _fresh(value: Any) -> Any:
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _proxy_assignments() -> Iterator[None]:
    """Record ``x[index] = value`` and ``x += y`` on proxies, while fxmaps traces.

    fx proxies support neither: item assignment fails, and ``x += y`` falls back to
    ``x = x + y``, which is wrong when anything else still reads the old ``x`` (an
    alias, a caller's tensor that a submodule updates in place). Item assignment
    becomes an ``operator.setitem`` node; an augmented assignment an out-of-place
    node, made in place after tracing where something reads the tensor it updates.
    """
    methods: dict[str, Callable[..., Any]] = {_SETITEM: _setitem}
    methods.update({name: _augmented(*ops) for name, ops in _AUGMENTED.items()})
    saved = {name: vars(fx.Proxy).get(name) for name in methods}
    for name, method in methods.items():
        setattr(fx.Proxy, name, method)
    try:
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                delattr(fx.Proxy, name)
            else:
                setattr(fx.Proxy, name, before)


def _setitem(self: fx.Proxy, key: Any, value: Any) -> None:
    self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})


def _augmented(
    plain: Callable[[Any, Any], Any], inplace: Callable[[Any, Any], Any]
) -> Callable[[fx.Proxy, Any], fx.Proxy]:
    def method(self: fx.Proxy, other: Any) -> fx.Proxy:
        proxy = self.tracer.create_proxy("call_function", plain, (self, other), {})
        if isinstance(self.tracer, _Tracer):
            self.tracer.augmented[proxy.node] = inplace
        return proxy

    return method


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
    """Whether ``node``'s result may share storage with an input (unknown ops: yes)."""
    if node.op == "call_module":
        # A module with weights (conv, linear, norm) computes a new tensor.
        return next(root.get_submodule(str(node.target)).parameters(), None) is None
    if node.op == "call_function":
        return node.target not in _FRESH_FUNCTIONS
    return node.op == "call_method"


def trace(
    model: nn.Module,
    *,
    n_inputs: int | None = None,
    leaf_modules: Iterable[LeafSpec] = (),
    autowrap_functions: Iterable[Callable[..., Any]] = (),
    train: bool = False,
) -> Traced:
    """Trace ``model`` into an fx graph, falling back to opaque leaves where needed.

    Args:
        model: The model to trace. Its mode, attributes and parameters are left
            as they were.
        n_inputs: How many positional inputs the caller will pass; optional
            ``forward`` arguments beyond those are fixed at their defaults.
        leaf_modules: Classes, instances or qualified names not to trace into.
        autowrap_functions: Functions to record as single call nodes.
        train: Trace the training-mode graph instead of the eval-mode graph.

    Raises:
        TraceError: Tracing failed in the model's own ``forward``, or no leaf
            choice helps; the message names the module and the source line.
    """
    leaf_types, leaf_names = _split_leaf_specs(model, leaf_modules)
    concrete, input_names = _concrete_args(model, n_inputs)
    wraps = tuple(autowrap_functions)
    known = known_untraceable()
    auto_leaves: dict[str, Failure] = {}
    helpers: dict[int, Helper] = {}

    def new_tracer(names: frozenset[str]) -> _Tracer:
        patches = patch_list(helpers.values())
        return _Tracer(
            leaf_types=leaf_types, leaf_names=names, autowrap_functions=wraps, patches=patches
        )

    for _ in range(sum(1 for _ in model.modules()) + 32):
        tracer = new_tracer(leaf_names | frozenset(auto_leaves))
        try:
            graph, constants = _symbolic_graph(tracer, model, concrete, train)
        except Exception as err:
            failure = diagnose(err, tracer.failure, known.codes)
            if failure.helper is not None and id(failure.helper[0]) not in helpers:
                helpers[id(failure.helper[0])] = failure.helper
                continue
            leaf = _leaf_for(failure, auto_leaves)
            whole = _kept_whole(model, known) if leaf is None else None
            if whole is not None:
                return _whole_model(model, input_names, replace(failure, note=whole))
            if leaf is None:
                raise TraceError(trace_error_message(model, failure)) from err
            twins = _registered_twins(model, leaf, failure, auto_leaves, known)
            if twins is None:
                twins = {leaf: failure}
                twins.update(_failing_twins(model, leaf, auto_leaves, helpers, new_tracer, train))
            auto_leaves.update(twins)
            continue
        graph_module, targets = _graph_module(graph, model, constants)
        user_leaves = (leaf_types, leaf_names)
        return _traced(
            graph_module, targets, tracer, input_names, user_leaves, auto_leaves, helpers
        )
    raise TraceError(f"fxmaps gave up tracing {type(model).__name__}: too many retries")


def _registered_twins(
    model: nn.Module,
    leaf: str,
    failure: Failure,
    auto_leaves: Mapping[str, Failure],
    known: Untraceable,
) -> dict[str, Failure] | None:
    """Every instance of the failing module's class, if timm registered it as untraceable.

    timm's registry says the class cannot be traced, so no instance is probed.
    """
    cls = type(model.get_submodule(leaf))
    if cls not in known.classes:
        return None
    noted = replace(failure, note=f"timm registers {cls.__name__} as not traceable")
    return {
        name: noted
        for name, module in model.named_modules()
        if type(module) is cls and (name == leaf or not _inside(name, auto_leaves))
    }


def _kept_whole(model: nn.Module, known: Untraceable) -> str | None:
    """Why a model that fails in its own ``forward`` is shown as one opaque node, if it is.

    Only torch.nn's own modules (``TransformerEncoderLayer``, ``LSTM``, ...) and
    classes timm registers as untraceable: code the user cannot change. Any other
    model gets a ``TraceError`` that says what to change.
    """
    cls = type(model).__name__
    if isinstance(model, known.classes):
        return f"timm registers {cls} as not traceable; the model is one node"
    if fx.Tracer.is_leaf_module(fx.Tracer(), model, ""):
        return f"torch.nn's {cls} is kept whole"
    return None


def _whole_model(model: nn.Module, input_names: tuple[str, ...], failure: Failure) -> Traced:
    """The model as one call node: inputs -> the model -> output (optional inputs at their
    defaults)."""
    cls = type(model).__name__
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
    if not name.isidentifier() or name in _RESERVED or name in input_names:
        name = f"fxmaps_{name}" if name.isidentifier() else "fxmaps_model"
    parameters = inspect.signature(model.forward).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    graph = fx.Graph()
    inputs = [
        graph.placeholder(p.name)
        for p in parameters
        if p.name in input_names and p.kind in positional
    ]
    call = graph.call_module(name, tuple(inputs))
    output = graph.output(call)
    names = {node: node.name for node in inputs} | {call: name, output: "output"}
    return Traced(
        graph_module=fx.GraphModule({name: model}, graph, cls if cls.isidentifier() else "Traced"),
        names=names,
        scopes=dict.fromkeys(names, ()),
        hidden=frozenset(),
        opaque=(OpaqueModule(name, cls, failure.reason, failure.location),),
        autowrapped=(),
        targets={call: ""},
    )


def _symbolic_graph(
    tracer: _Tracer, root: nn.Module, concrete: dict[str, Any], train: bool
) -> tuple[fx.Graph, dict[str, Any]]:
    """Trace in the requested mode; restore every module's mode and attributes after.

    Returns the graph and the tensor constants fx stored on ``root`` (removed again).
    """
    modes = [(m, m.training) for m in root.modules()]
    attrs = set(vars(root))
    constants: dict[str, Any] = {}
    try:
        root.train(train)
        graph = tracer.trace(root, concrete_args=concrete or None)
    finally:
        for module, mode in modes:
            module.training = mode
        for attr in set(vars(root)) - attrs:
            constants[attr] = getattr(root, attr)
            delattr(root, attr)
    return graph, constants


def _graph_module(
    graph: fx.Graph, model: nn.Module, constants: dict[str, Any]
) -> tuple[fx.GraphModule, dict[fx.Node, str]]:
    """The graph module, and each ``call_module``/``get_attr`` node's qualified name in ``model``.

    Graph targets are renamed where they would clash with ``GraphModule``'s own
    attributes, such as a submodule called ``meta``.
    """
    targets = {n: str(n.target) for n in graph.nodes if n.op in ("call_module", "get_attr")}
    _rename_reserved(graph)
    root: dict[str, Any] = {
        str(n.target): _fetch(model, targets[n], constants)
        for n in graph.nodes
        if n.op in ("call_module", "get_attr")
    }
    name = type(model).__name__
    return fx.GraphModule(root, graph, name if name.isidentifier() else "Traced"), targets


def _failing_twins(
    model: nn.Module,
    leaf: str,
    auto_leaves: dict[str, Failure],
    helpers: dict[int, Helper],
    new_tracer: Callable[[frozenset[str]], _Tracer],
    train: bool,
) -> dict[str, Failure]:
    """Other instances of the failing module's class that fail to trace on their own.

    Probing each one alone costs a trace of that instance; finding them now saves
    a retrace of the whole model per failing instance.
    """
    cls = type(model.get_submodule(leaf))
    twins: dict[str, Failure] = {}
    for name, module in model.named_modules():
        if type(module) is not cls or name == leaf or _inside(name, auto_leaves):
            continue
        tracer = new_tracer(frozenset())
        try:
            concrete, _ = _concrete_args(module, None)
            _symbolic_graph(tracer, module, concrete, train)
        except InputError:
            continue
        except Exception as err:
            failure = diagnose(err, tracer.failure)
            own_code = not failure.module_stack  # not one of the twin's children
            if own_code and (failure.helper is None or id(failure.helper[0]) in helpers):
                twins[name] = failure
    return twins


def _inside(name: str, leaves: Mapping[str, object]) -> bool:
    """Whether the module ``name`` is one of ``leaves`` or inside one."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in leaves for i in range(1, len(parts) + 1))


def _rename_reserved(graph: fx.Graph) -> None:
    """Rename targets whose first atom is an attribute every ``GraphModule`` has."""
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            first, dot, rest = str(node.target).partition(".")
            if first in _RESERVED:
                node.target = f"fxmaps_{first}{dot}{rest}"


def _fetch(model: nn.Module, target: str, constants: dict[str, Any]) -> Any:
    return constants[target] if target in constants else operator.attrgetter(target)(model)


def _traced(
    graph_module: fx.GraphModule,
    targets: dict[fx.Node, str],
    tracer: _Tracer,
    input_names: tuple[str, ...],
    user_leaves: tuple[tuple[type[nn.Module], ...], frozenset[str]],
    auto_leaves: dict[str, Failure],
    helpers: dict[int, Helper],
) -> Traced:
    graph = graph_module.graph
    leaf_types, leaf_names = user_leaves
    opaque = [
        _opaque(node, tracer.node_names[node], graph_module, auto_leaves.get(targets[node]))
        for node in graph.nodes
        if node.op == "call_module"
        and (
            targets[node] in auto_leaves
            or targets[node] in leaf_names
            or isinstance(graph_module.get_submodule(str(node.target)), leaf_types)
        )
    ]
    return Traced(
        graph_module=graph_module,
        names={node: tracer.node_names[node] for node in graph.nodes},
        scopes=_scopes(graph),
        hidden=_hidden_nodes(graph, input_names),
        opaque=tuple(opaque),
        autowrapped=tuple(f"{fn.__module__}.{fn.__qualname__}" for fn, _ in helpers.values()),
        targets=targets,
    )


def _opaque(
    node: fx.Node, name: str, graph_module: fx.GraphModule, failure: Failure | None
) -> OpaqueModule:
    module_type = type(graph_module.get_submodule(str(node.target))).__name__
    if failure is None:
        return OpaqueModule(name, module_type, "listed in leaf_modules", "")
    return OpaqueModule(name, module_type, failure.reason, failure.location)


def _split_leaf_specs(
    model: nn.Module, specs: Iterable[LeafSpec]
) -> tuple[tuple[type[nn.Module], ...], frozenset[str]]:
    named = dict(model.named_modules())
    paths = {module: name for name, module in named.items()}
    types: list[type[nn.Module]] = []
    names: set[str] = set()
    for spec in specs:
        if isinstance(spec, type) and issubclass(spec, nn.Module):
            types.append(spec)
        elif isinstance(spec, nn.Module) and spec in paths:
            names.add(paths[spec])
        elif isinstance(spec, str) and spec in named:
            names.add(spec)
        else:
            raise InputError(
                f"leaf_modules entry {spec!r} is not an nn.Module class, a submodule of "
                f"{type(model).__name__}, or the qualified name of one (like 'layer1.0')"
            )
    return tuple(types), frozenset(names)


def _concrete_args(
    model: nn.Module, n_inputs: int | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Fix optional ``forward`` arguments the caller does not pass at their defaults.

    Traced as proxies, ``if mask is not None`` would silently take the wrong branch.
    """
    params = list(inspect.signature(model.forward).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if n_inputs is None:
        n_inputs = sum(1 for p in positional if p.default is p.empty)
    if n_inputs > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InputError(
            f"{type(model).__name__}.forward takes {len(positional)} positional inputs "
            f"({', '.join(p.name for p in positional)}), but the example input has {n_inputs}"
        )
    inputs = {p.name for p in positional[:n_inputs]}
    concrete: dict[str, Any] = {}
    for p in params:
        if p.name in inputs or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise InputError(
                f"{type(model).__name__}.forward needs the argument {p.name!r}, which the "
                "example input does not give; pass a tuple with one tensor per input"
            )
        if isinstance(p.default, _SIMPLE_DEFAULTS):
            concrete[p.name] = p.default
    return concrete, tuple(p.name for p in params if p.name not in concrete)


def _hidden_nodes(graph: fx.Graph, input_names: tuple[str, ...]) -> frozenset[fx.Node]:
    """Placeholders fx made for concrete arguments, and the guards that check them."""
    hidden: set[fx.Node] = set()
    for node in graph.nodes:
        concrete = node.op == "placeholder" and str(node.target).lstrip("*") not in input_names
        guard = (
            node.op not in ("placeholder", "output")
            and bool(node.all_input_nodes)
            and all(arg in hidden for arg in node.all_input_nodes)
        )
        if concrete or guard:
            hidden.add(node)
    return frozenset(hidden)


def _scopes(graph: fx.Graph) -> dict[fx.Node, tuple[Scope, ...]]:
    """Each node's enclosing traced-through module calls, outermost first."""
    cache: dict[str, Scope] = {}

    def scope(key: str, qualname: str, module_type: type) -> Scope:
        if key not in cache:
            _, _, calls = key.partition("@")
            cache[key] = Scope(f"{qualname}_{calls}" if calls else qualname, qualname, module_type)
        return cache[key]

    scopes: dict[fx.Node, tuple[Scope, ...]] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack", {})
        items = list(stack.items())
        if node.op == "call_module":
            items = items[:-1]  # the leaf module itself is the node, not its scope
        scopes[node] = tuple(scope(key, qual, typ) for key, (qual, typ) in items)
    return scopes


def _leaf_for(failure: Failure, auto_leaves: dict[str, Failure]) -> str | None:
    """The innermost module on the failure's stack that can still become a leaf."""
    for qualname in reversed(failure.module_stack):
        if qualname and qualname not in auto_leaves:
            return qualname
    return None
