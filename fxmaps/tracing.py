"""Symbolic tracing with torch.fx: node names, leaf modules and the auto-leaf fallback.

Nodes are named the way torchvision's ``create_feature_extractor`` names them
(``layer1.0.conv1``, ``layer1.0.add``, ``_1`` for a second call), but fxmaps
traces into composite ``torchvision.ops`` modules (``Conv2dNormActivation``,
``SqueezeExcitation``, ``MLP``) so every conv and linear call is a node.

When tracing fails, :func:`trace` first autowraps the plain helper function
that failed (shape arithmetic with ``max``/``int``/``len``), then makes the
innermost failing submodule a leaf, and retries; what became opaque is reported.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.ops
from torch import fx, nn

from fxmaps._failures import (
    Failure,
    Helper,
    Patch,
    diagnose,
    is_assert,
    patch_list,
    patched_globals,
    short,
    trace_error_message,
)
from fxmaps.errors import InputError, TraceError

__all__ = ["LeafSpec", "OpaqueModule", "Scope", "Traced", "trace"]

LeafSpec = type[nn.Module] | nn.Module | str
"""A leaf module given by class, by instance or by qualified name."""

_SETITEM = "__setitem__"
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
        self._leaf_names = leaf_names
        self._patches = patches
        self._stack: list[str] = []
        self._namer = _Namer()
        self.node_names: dict[fx.Node, str] = {}
        self.failure: tuple[BaseException, tuple[str, ...]] | None = None

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
        # fx records ``assert cond`` only for the bytecode of some Python versions;
        # recognise the assert pattern here for every version.
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame and frame.f_back else None
        if caller is not None and is_assert(caller):
            self.create_proxy("call_function", torch._assert, (obj, "assert traced by fxmaps"), {})
            return True
        return bool(super().to_bool(obj))

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with patched_globals(self._patches), _item_assignment():
            return super().trace(root, concrete_args)


@contextlib.contextmanager
def _item_assignment() -> Iterator[None]:
    """Record ``x[index] = value`` on a proxy as an ``operator.setitem`` node.

    fx proxies do not support item assignment, so a model that writes into a
    tensor could not be traced at all; this holds only while fxmaps traces.
    """
    saved = vars(fx.Proxy).get(_SETITEM)

    def setitem(self: fx.Proxy, key: Any, value: Any) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    setattr(fx.Proxy, _SETITEM, setitem)
    try:
        yield
    finally:
        if saved is None:
            delattr(fx.Proxy, _SETITEM)
        else:
            setattr(fx.Proxy, _SETITEM, saved)


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
            failure = diagnose(err, tracer.failure)
            if failure.helper is not None and id(failure.helper[0]) not in helpers:
                helpers[id(failure.helper[0])] = failure.helper
                continue
            leaf = _leaf_for(failure, auto_leaves)
            if leaf is None:
                raise TraceError(trace_error_message(model, failure)) from err
            auto_leaves[leaf] = failure
            auto_leaves.update(_failing_twins(model, leaf, auto_leaves, helpers, new_tracer, train))
            continue
        graph_module, targets = _graph_module(graph, model, constants)
        user_leaves = (leaf_types, leaf_names)
        return _traced(
            graph_module, targets, tracer, input_names, user_leaves, auto_leaves, helpers
        )
    raise TraceError(f"fxmaps gave up tracing {type(model).__name__}: too many retries")


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
    return OpaqueModule(name, module_type, short(failure.error), failure.location)


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
