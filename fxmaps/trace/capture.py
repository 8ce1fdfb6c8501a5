"""Capture: run the model once, and trace with torch.fx every module call that fx can follow.

Where symbolic tracing stops in a module's own ``forward`` (data-dependent control
flow, ``**kwargs`` wrappers, a list of images, iteration over a shape), fxmaps does
not give up: it runs the model on the example input, and handles each module call
as it happens (see :mod:`.regions`):

* a torch.nn layer (or one of ``leaf_modules``) is called as it is: one node;
* any other module is traced with fxmaps's symbolic tracer for the arguments it was
  given; if that works, the call runs as that graph and all of its nodes join the
  graph (the submodules it could not trace into are captured the same way);
* if tracing fails in the module's own code, its ``forward`` runs as Python on a
  shadow of the module (:mod:`.shadows`), the torch ops it calls are recorded
  (:mod:`.glue`), and each submodule it calls is handled the same way.

The nodes are stitched into one graph by the tensors that flow between them
(:mod:`.flat`). Names are torchvision's inside traced code and the module path (``_1``
for a second call) elsewhere. The graph describes this run; :attr:`Traced.capture`
says how to run the model the same way again, which is what extraction does.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Iterator
from typing import Any

import torch
from torch import fx, nn

from fxmaps.errors import FxmapsError, ShapeError, TraceError
from fxmaps.facts import CallKey, Origin, Scope, Source, facts
from fxmaps.trace.diagnose import Failure, diagnose, short
from fxmaps.trace.fallback import OwnCodeFailure, trace_symbolic
from fxmaps.trace.flat import FlatGraph
from fxmaps.trace.glue import OpWatch, as_fx_call
from fxmaps.trace.inputs import Inputs, bind, describe_inputs
from fxmaps.trace.minimum import is_too_small, model_input_minimum, too_small_hint
from fxmaps.trace.naming import attribute, join
from fxmaps.trace.options import NotSymbolic, TraceRequest, split_leaf_specs
from fxmaps.trace.record import Traced
from fxmaps.trace.regions import Capture, EagerRegion, FxVariant
from fxmaps.trace.shadows import Shadows
from fxmaps.trace.state import preserved_state
from fxmaps.trace.symbolic import SymbolicTracer
from fxmaps.trace.variants import fingerprint, placeholder_values, signature_key, variant_of

__all__ = ["capture"]


def capture(
    model: nn.Module, request: TraceRequest, root: Traced | Failure | None = None
) -> Traced:
    """Capture ``model`` on ``request.inputs`` (see the module docstring).

    ``root`` is what a symbolic trace of the whole model gave already: the trace
    (with the submodules it could not trace into as leaves), or why it failed in the
    model's own code. It is reused, not traced again.

    Raises:
        ShapeError: The model failed while it ran on the example input; the message
            names the module call and the line.
    """
    if request.inputs is None:
        raise TraceError("capturing a model needs its example input")
    run = _Run(model, request, root)
    try:
        with preserved_state(model, train=request.train), torch.no_grad(), run.watch:
            run.start()
    except FxmapsError:
        raise
    except Exception as err:
        raise run.failed(err) from err  # the model as it was, the watch off
    return run.finish()


class _Run:
    """One capture run: the handler of every module call, and what it recorded."""

    def __init__(
        self, model: nn.Module, request: TraceRequest, root: Traced | Failure | None
    ) -> None:
        self.model = model
        self.request = request
        self.flat = FlatGraph(model)
        self.shadows = Shadows(model, self.dispatch)
        self.watch = OpWatch(self._op)
        self.calls: dict[CallKey, str | int] = {}
        self.variants: list[FxVariant] = []
        self.by_signature: dict[tuple[Any, ...], int | Failure] = {}
        self.ops: dict[CallKey, list[str]] = {}
        self.fingerprints: dict[CallKey, Hashable] = {}
        self.signatures: dict[CallKey, Hashable] = {}
        self.eager: list[EagerRegion] = []
        self.autowrapped: set[str] = set()
        self.counts: dict[str, int] = {}
        self.stack: list[tuple[CallKey, Scope | None, bool, tuple[Scope, ...]]] = []
        self.pending: tuple[Scope, ...] | None = None  # scopes around a call a region dispatches
        self.failed_at: tuple[str, str] | None = None
        self.leaf_types, self.leaf_names = split_leaf_specs(model, request.leaf_modules)
        self.leaf_rule = SymbolicTracer(
            leaf_types=self.leaf_types,
            leaf_names=self.leaf_names,
            autowrap_functions=(),
            patches=(),
        )
        if root is not None and request.inputs is not None:
            self._remember(root, request.inputs)

    # -- the run ---------------------------------------------------------------------------

    def start(self) -> None:
        inputs = self.request.inputs
        assert inputs is not None  # checked by capture()
        bound = bind(self.model, inputs)
        index = 0
        for name, value in bound.arguments.items():
            for path, tensor in _named_leaves(name, value):
                self.flat.placeholder(path, tensor, index)
                index += 1
        self.shadows.sync()
        output = inputs.call(self.shadows.of(""))  # as given: extraction calls it the same way
        self.flat.output(output)

    def dispatch(
        self, path: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Handle one module call (the shadows hand every call here)."""
        try:
            return self._handle(path, module, args, kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = (path, type(module).__name__)
            raise

    def failed(self, err: Exception) -> ShapeError:
        """The error to raise when the model failed while it ran."""
        path, module_type = self.failed_at or ("", type(self.model).__name__)
        where = f"{module_type} {path!r}" if path else f"{module_type}'s own forward"
        location = diagnose(err, None).location or "an unknown line"
        inputs = describe_inputs(self.request.inputs) if self.request.inputs else ""
        return ShapeError(
            f"{type(self.model).__name__} failed while it ran on the example input ({inputs}), "
            f"in {where} at {location}: {short(err)}{self._too_small(err)}. Check that the "
            "input is what the model takes (shapes, dtypes, argument names)",
            node=path or None,
        )

    def _too_small(self, err: Exception) -> str:
        """The smallest input that goes through, when the input was too small."""
        inputs = self.request.inputs
        if inputs is None or not is_too_small(err):
            return ""
        with torch.no_grad():
            minimum = model_input_minimum(
                self.model, inputs.args, inputs.kwargs, train=self.request.train
            )
        return too_small_hint(inputs.tensors(), minimum, err)

    def _handle(
        self, path: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        key = (path, self.counts.get(path, 0))
        self.counts[path] = key[1] + 1
        if self._is_leaf(path, module):
            return self._leaf(key, module, args, kwargs)
        decision = self._decide(key, module, args, kwargs)
        if isinstance(decision, int):
            return self._fx(key, decision, args, kwargs)
        return self._eager(key, module, args, kwargs, decision)

    def finish(self) -> Traced:
        self.flat.graph.lint()
        module = self.flat.graph_module(_class_name(self.model))
        record = Capture(
            dict(self.calls),
            tuple(self.variants),
            {k: tuple(v) for k, v in self.ops.items()},
            dict(self.fingerprints),
            dict(self.signatures),
            self.flat.output_finite,
            self.flat.first_non_finite,
        )
        return Traced(
            module,
            opaque=(),
            autowrapped=tuple(sorted(self.autowrapped)),
            eager=tuple(self.eager),
            capture=record,
        )

    # -- leaves ----------------------------------------------------------------------------

    def _is_leaf(self, path: str, module: nn.Module) -> bool:
        return bool(self.leaf_rule.is_leaf_module(module, path))

    def _leaf(
        self, key: CallKey, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self.calls[key] = "leaf"
        with self.watch.switched(False):  # its shadow's call ran the hooks: only its forward
            output = module.forward(*args, **kwargs)
            self._record_leaf(key, module, args, kwargs, output)
        return output

    def _record_leaf(
        self,
        key: CallKey,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        output: Any,
    ) -> None:
        target = self.flat.call_module(key[0], module)
        node = self.flat.add(
            "call_module",
            target,
            self.flat.arg(args),
            self.flat.arg(kwargs),
            name=(
                self.flat.namer.call(key[0])
                if key[0]
                else self.flat.namer.unique(_class_name(self.model).lower())
            )[0],
            scopes=self._scopes() if self.pending is None else self.pending,
            region=self._region(),
            origin=Origin(Source.LEAF, key),
        )
        self.flat.produced(node, output)

    # -- traced regions --------------------------------------------------------------------

    def _decide(
        self, key: CallKey, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> int | Failure:
        signature = signature_key(key[0], module, args, kwargs)
        if signature is None:
            return _failure(NotSymbolic("the arguments cannot be bound to forward"))
        self.signatures[key] = signature
        if signature not in self.by_signature:
            inputs = Inputs(args, kwargs)
            try:
                traced = trace_symbolic(
                    module, _for_module(self.request, inputs), own_failure="signal"
                )
            except OwnCodeFailure as failed:
                self.by_signature[signature] = failed.failure
            except NotSymbolic as err:
                self.by_signature[signature] = _failure(err)
            else:
                self.by_signature[signature] = self._variant(key[0], traced)
        return self.by_signature[signature]

    def _remember(self, root: Traced | Failure, inputs: Inputs) -> None:
        """What the symbolic trace of the whole model found, for the model's own call."""
        signature = signature_key("", self.model, inputs.args, dict(inputs.kwargs))
        if signature is not None:
            found = root if isinstance(root, Failure) else self._variant("", root)
            self.by_signature[signature] = found

    def _variant(self, path: str, traced: Traced) -> int:
        self.autowrapped.update(traced.autowrapped)
        self.variants.append(variant_of(path, traced))
        return len(self.variants) - 1

    def _fx(self, key: CallKey, index: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls[key] = index
        self.fingerprints[key] = fingerprint(args, kwargs)
        variant = self.variants[index]
        scope = self._enter(key, variant.graph_module.__class__.__name__, eager=False)
        try:
            with self.watch.switched(False):
                return _RegionRecorder(self, key, variant, scope).run_call(args, kwargs)
        finally:
            self.stack.pop()

    # -- eager regions ---------------------------------------------------------------------

    def _eager(
        self,
        key: CallKey,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        failure: Failure,
    ) -> Any:
        self.calls[key] = "eager"
        self.ops[key] = []
        scope = self._enter(key, type(module).__name__, eager=True)
        name = scope.name if scope is not None else _class_name(self.model)
        self.eager.append(
            EagerRegion(name, type(module).__name__, failure.reason, failure.location)
        )
        try:
            with self.watch.switched(True):
                return type(module).forward(self.shadows.of(key[0]), *args, **kwargs)
        finally:
            self.stack.pop()

    def _op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        with self.watch.switched(False):
            self._record_op(func, args, kwargs, result)
        return result

    def _record_op(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        key = self.stack[-1][0]
        ops = self.ops[key]
        op, target, fx_args = as_fx_call(func, args)
        label = target if isinstance(target, str) else getattr(target, "__name__", "op")
        node = self.flat.add(
            op,
            target,
            self.flat.arg(fx_args),
            self.flat.arg(kwargs),
            name=self.flat.namer.unique(join(self._region() or "", str(label).strip("_")))[0],
            scopes=self._scopes(),
            region=self._region(),
            origin=Origin(Source.OP, key, len(ops)),
        )
        ops.append(str(label))
        if result is not None:
            self.flat.produced(node, result)

    # -- scopes ----------------------------------------------------------------------------

    def _enter(self, key: CallKey, module_type: str, *, eager: bool) -> Scope | None:
        path, count = key
        scope = None
        if path:
            cls = type(self.model.get_submodule(path))
            scope = Scope(f"{path}_{count}" if count else path, path, cls)
        outer = self._scopes() if self.pending is None else self.pending
        self.pending = None
        self.stack.append((key, scope, eager, outer if scope is None else (*outer, scope)))
        return scope

    def _scopes(self) -> tuple[Scope, ...]:
        return self.stack[-1][3] if self.stack else ()

    def _region(self) -> str | None:
        """The public name of the innermost eager call running now (the model: its class)."""
        if not self.stack:
            return None
        _, scope, eager, _ = self.stack[-1]
        if not eager:
            return None
        return scope.name if scope is not None else ""


class _RegionRecorder(fx.Interpreter):
    """Runs one traced region call and records its nodes into the run's graph."""

    def __init__(self, run: _Run, key: CallKey, variant: FxVariant, scope: Scope | None) -> None:
        super().__init__(variant.graph_module, garbage_collect_values=True)
        self.run_ = run
        self.key = key
        self.variant = variant
        self.prefix = key[0]
        self.outer = run._scopes()
        self.env_flat: dict[fx.Node, Any] = {}
        self.current: fx.Node | None = None

    def run_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        module = self.run_.model.get_submodule(self.key[0])
        values = placeholder_values(self.variant.graph_module, module, Inputs(args, kwargs))
        return self.run(*values)

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        value = super().run_node(n)
        found = facts(n)
        if found.hidden:
            return value
        if n.op == "placeholder" or self._is_dispatch(n):
            self.env_flat[n] = self.run_.flat.arg(value)
        elif n.op == "output":
            pass
        elif _picks(n, self.env_flat):
            self.env_flat[n] = self.env_flat[n.args[0]][n.args[1]]  # type: ignore[index]
        else:
            self.env_flat[n] = self._copy(n, found, value)
        return value

    def _is_dispatch(self, node: fx.Node) -> bool:
        return node.op == "call_module" and str(node.target) in self.variant.dispatch

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        path = self.variant.dispatch.get(str(target))
        if path is None:
            return super().call_module(target, args, kwargs)
        around = facts(self.current).scopes if self.current is not None else ()  # calls between
        before = self.run_.pending
        self.run_.pending = self.outer + tuple(_prefixed(s, self.prefix) for s in around)
        try:
            return self.run_.shadows.of(path)(*args, **kwargs)
        finally:
            self.run_.pending = before

    def _copy(self, n: fx.Node, found: Any, value: Any) -> fx.Node:
        flat = self.run_.flat
        target: Any = n.target
        if n.op in ("call_module", "get_attr"):
            target = join(self.prefix, found.target)
            flat.attribute(target, attribute(self.module, str(n.target)))
        node = flat.add(
            n.op,
            target,
            fx.map_arg(n.args, self.env_flat.__getitem__),
            fx.map_arg(n.kwargs, self.env_flat.__getitem__),
            name=(
                flat.namer.call(target)
                if n.op == "call_module"
                else flat.namer.unique(join(self.prefix, found.name))
            )[0],
            scopes=self.outer + tuple(_prefixed(s, self.prefix) for s in found.scopes),
            region=None,
            origin=Origin(Source.FX, self.key, n.name),
        )
        flat.produced(node, value)
        return node


def _picks(node: fx.Node, env: dict[fx.Node, Any]) -> bool:
    """A getitem with a constant index on a value that is a structure of nodes, not a node."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return False
    source = node.args[0]
    return isinstance(source, fx.Node) and not isinstance(env.get(source), fx.Node)


def _prefixed(scope: Scope, prefix: str) -> Scope:
    return Scope(join(prefix, scope.name), join(prefix, scope.qualname), scope.module_type)


def _named_leaves(name: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _named_leaves(f"{name}.{i}", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _named_leaves(f"{name}.{key}", item)


def _for_module(request: TraceRequest, inputs: Inputs) -> TraceRequest:
    return TraceRequest(inputs, (), request.autowrap_functions, request.train)


def _failure(err: Exception) -> Failure:
    return Failure(err, (), "", None)


def _class_name(model: nn.Module) -> str:
    name = type(model).__name__
    return name if name.isidentifier() else "Traced"
