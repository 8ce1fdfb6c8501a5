"""Extraction from a captured model: run it the way it was captured, take each map where made.

A captured graph (:mod:`fxmaps.trace.capture`) describes one run; its nodes say
where they come from. To extract, the model runs again through shadows of its
modules, and each module call is handled as it was when captured: a leaf is
called and its output kept if asked for; a traced region runs as its graph,
rewritten (:mod:`.rewrite`) to also return the maps asked for inside it (copying
only those a later in-place op overwrites); an eager call runs its Python, with
its ops watched only when one of them is asked for. Nothing else is added to the
run, so the cost stays that of a forward pass plus the maps kept.

A call that does not look like the one captured (other arguments, a module called
more often) runs as the model would, and a map asked for in it is refused with
what to do, rather than lined up with the wrong values.

A *swap* (what class activation maps use) goes one step further: where a chosen
node's value is made, the run goes on with what the swap returns instead (in a
traced region, the region's graph calls it right after that node), so a caller can
put a leaf of its own there and differentiate the rest of the run.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from fxmaps.classify import note_kinds
from fxmaps.errors import FxmapsError
from fxmaps.extract.resident import release
from fxmaps.extract.rewrite import rewrite_for_maps
from fxmaps.extract.transforms import MapOptions, MapTransform
from fxmaps.facts import CallKey, Kind, Origin, Source, facts, note
from fxmaps.graph import Layer, ModelGraph
from fxmaps.trace.diagnose import current_line
from fxmaps.trace.glue import OpWatch, as_fx_call
from fxmaps.trace.inputs import Inputs, bind, map_tensors, tensor_leaves
from fxmaps.trace.naming import attribute
from fxmaps.trace.regions import Capture
from fxmaps.trace.shadows import Shadows
from fxmaps.trace.variants import fingerprint, graph_inputs, signature_key

__all__ = ["CapturedExtraction", "Swap"]

Swap = Callable[[Layer, Any], Any]
"""Called where a chosen node's value is made: ``(layer, value) -> what the run goes on
with`` (the value itself, or a tensor standing in for it)."""

_Found = tuple[dict[str, Any], dict[str, int], dict[str, torch.Tensor | None]]
_Want = tuple[Layer, tuple[Any, ...]]  # a layer, and the keys that pick it out of its value


@dataclass
class _CallPlan:
    """What to take from one module call."""

    whole: list[_Want] = field(default_factory=list)  # the leaf call's output
    nodes: dict[str, list[_Want]] = field(default_factory=dict)  # fx region: local node
    ops: dict[int, list[_Want]] = field(default_factory=dict)  # eager call: op index


class _State(threading.local):
    counts: dict[str, int]
    stack: list[CallKey]
    found: _Found
    op_index: dict[CallKey, int]


class CapturedExtraction:
    """The maps of the chosen layers of a captured graph, from runs of the model."""

    def __init__(
        self,
        graph: ModelGraph,
        layers: list[Layer],
        options: MapOptions,
        forced: frozenset[str],
        *,
        swap: Swap | None = None,
    ) -> None:
        if graph.capture is None:
            raise ValueError("CapturedExtraction needs a captured graph")
        self._swap = swap
        self._model = graph.model  # not the graph: extraction caches hold this object weakly
        self._capture: Capture = graph.capture
        self._options = options
        self._identity = options.identity
        self._forced = forced
        self._plans: dict[CallKey, _CallPlan] = {}
        self._inputs: list[tuple[Layer, int, tuple[Any, ...]]] = []
        self._constants: list[tuple[Layer, Any]] = []
        self._outputs: list[Layer] = []
        self._order = [layer.name for layer in layers]
        for layer in layers:
            self._plan(graph, layer, facts(graph.fx_node(layer.name)).origin)
        self._regions: dict[CallKey, fx.GraphModule] = {}
        self._picks: dict[CallKey, list[int | str]] = {}
        self._state = _State()
        self._shadows = Shadows(self._model, self._dispatch)
        self._watch = OpWatch(self._op) if any(p.ops for p in self._plans.values()) else None

    def release_memory(self) -> None:
        """Let go of the memory the traced regions keep for the next call (:mod:`.resident`)."""
        for region in self._regions.values():
            release(region)

    # -- planning --------------------------------------------------------------------------

    def _plan(self, graph: ModelGraph, layer: Layer, origin: Origin | None) -> None:
        if origin is None or origin.source is Source.OUTPUT:
            self._outputs.append(layer)
            return
        local, keys = _split(origin.local)
        if origin.source is Source.INPUT:
            self._inputs.append((layer, int(local or 0), keys))
            return
        if origin.source is Source.CONSTANT or origin.call is None:
            self._constants.append((layer, _attribute(graph, layer)))
            return
        plan = self._plans.setdefault(origin.call, _CallPlan())
        if origin.source is Source.LEAF:
            plan.whole.append((layer, keys))
        elif origin.source is Source.FX:
            plan.nodes.setdefault(str(local), []).append((layer, keys))
        else:
            plan.ops.setdefault(int(local or 0), []).append((layer, keys))

    # -- running ---------------------------------------------------------------------------

    def __call__(self, inputs: Inputs) -> _Found:
        """``(maps, versions, kept channels)`` of one run on ``inputs``."""
        self.run(inputs)
        maps, versions, kept = self._state.found
        ordered = {name: maps[name] for name in self._order if name in maps}
        return ordered, versions, kept

    def run(self, inputs: Inputs) -> Any:
        """One run on ``inputs``; what the model returns. The maps are taken, or with a swap
        handed to it where they are made (a constant is read, not made: no swap sees it)."""
        state = self._state
        state.counts, state.stack, state.op_index = {}, [], {}
        state.found = ({}, {}, {})
        self._shadows.sync()
        watching = self._watch if self._watch is not None else _NoWatch()
        given = self._swapped_inputs(inputs) if self._swap and self._inputs else inputs
        with watching:
            output = given.call(self._shadows.of(""))
        if self._swap is not None:  # it saw each chosen value: nothing is kept here
            for layer in self._outputs:
                output = self._swap(layer, output)
            return output
        tensors = self._input_tensors(inputs) if self._inputs else []
        for layer, index, keys in self._inputs:
            self._take(layer, _pick(tensors[index], keys))
        for layer in self._outputs:
            self._take(layer, output, at_end=True)
        for layer, value in self._constants:
            self._take(layer, value, at_end=True)
        return output

    def _swapped_inputs(self, inputs: Inputs) -> Inputs:
        """``inputs`` with each chosen input tensor as the swap gives it."""
        assert self._swap is not None  # only called with a swap
        swap = self._swap
        chosen: dict[int, list[tuple[Layer, tuple[Any, ...]]]] = {}
        for layer, index, keys in self._inputs:
            chosen.setdefault(index, []).append((layer, keys))
        count = iter(range(len(inputs.tensors()) + 1))

        def swapped(tensor: torch.Tensor) -> Any:
            value: Any = tensor
            for layer, keys in chosen.get(next(count), ()):
                value = _replaced(value, keys, swap(layer, _pick(value, keys)))
            return value

        bound = bind(self._model, inputs)
        for name, value in bound.arguments.items():
            bound.arguments[name] = map_tensors(value, swapped)
        return Inputs(tuple(bound.args), dict(bound.kwargs))

    def _input_tensors(self, inputs: Inputs) -> list[torch.Tensor]:
        """The input tensors in the order the graph's placeholders have them."""
        return tensor_leaves(list(bind(self._model, inputs).arguments.values()))

    def _dispatch(
        self, path: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        state = self._state
        key = (path, state.counts.get(path, 0))
        state.counts[path] = key[1] + 1
        decision = self._capture.calls.get(key)
        plan = self._plans.get(key)
        if decision == "leaf":  # its shadow's call ran the hooks: run only its forward
            if self._watch is None:
                output = module.forward(*args, **kwargs)
            else:
                output = self._quiet(lambda: module.forward(*args, **kwargs))
            for layer, keys in plan.whole if plan else ():
                output = self._made(layer, output, keys)
            return output
        if isinstance(decision, int):
            usual = self._capture.fingerprints.get(key) == fingerprint(args, kwargs)
            if usual or self._same_call(key, module, args, kwargs):
                return self._region(key, decision, module, args, kwargs, usual)
        if decision == "eager":
            return self._eager(key, module, args, kwargs, plan)
        self._refuse(key, plan, module)
        return type(module).forward(self._shadows.of(path), *args, **kwargs)

    def _same_call(
        self, key: CallKey, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> bool:
        """Whether a call given in another form binds to the arguments the trace was for."""
        expected = self._capture.signatures.get(key)
        return expected is not None and signature_key(key[0], module, args, kwargs) == expected

    def _region(
        self,
        key: CallKey,
        index: int,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        usual: bool,
    ) -> Any:
        region = self._regions.get(key)
        if region is None:
            region = self._regions[key] = self._compile(key, index)
        picks = self._picks.get(key) if usual else None
        if usual and picks is None:  # where the tensors sit in calls like the captured one
            picks = self._picks[key] = _tensor_picks(module, args, kwargs)
        if picks is not None:
            values = [args[i] if isinstance(i, int) else kwargs[i] for i in picks]
        else:
            values = list(graph_inputs(module, Inputs(args, kwargs)))
        if self._watch is None:  # its own forward: a rewritten region has no hooks to run
            output, maps, versions, kept = region.forward(*values)
        else:
            output, maps, versions, kept = self._quiet(lambda: region(*values))
        output = self._capture.variants[index].graph_module.graph.process_outputs(output)
        found_maps, found_versions, found_kept = self._state.found
        plan = self._plans.get(key) if self._swap is None else None  # a swap took them
        for local, wants in plan.nodes.items() if plan else ():
            for layer, keys in wants:
                if keys:
                    self._take(layer, _pick(maps[_raw(local)], keys))
                else:
                    found_maps[layer.name] = maps[layer.name]
                    found_versions[layer.name] = versions[layer.name]
                    found_kept[layer.name] = kept[layer.name]
        return output

    def _compile(self, key: CallKey, index: int) -> fx.GraphModule:
        """The region's graph, rewritten to return its output and the maps asked for (with
        a swap: to call it where each chosen node's value is made, and return no maps)."""
        variant = self._capture.variants[index]
        source = variant.graph_module
        if not any(facts(n).kind for n in source.graph.nodes):
            note_kinds(source)
        plan = self._plans.get(key)
        if self._swap is not None and plan is not None:
            source, plan = self._with_swaps(source, plan), None
        by_name = {n.name: n for n in source.graph.nodes}
        chosen: list[tuple[Layer, fx.Node]] = []
        for local, wants in plan.nodes.items() if plan else ():
            node = by_name[local]
            for layer, keys in wants:
                if keys:
                    raw = Layer(_raw(local), Kind.OTHER, "", None, None, 0, None)
                    chosen.append((raw, node))
                else:
                    chosen.append((layer, node))
        shadows = {target: self._shadows.of(path) for target, path in variant.dispatch.items()}
        region, _ = rewrite_for_maps(
            source,
            _unique(chosen),
            self._options,
            self._forced,
            keep_output=True,
            replace=shadows,
        )
        return region

    def _with_swaps(self, source: fx.GraphModule, plan: _CallPlan) -> fx.GraphModule:
        """A copy of ``source`` that calls :meth:`_made` right after each chosen node, its
        users reading what that returns."""
        graph = copy.deepcopy(source.graph)
        module = fx.GraphModule(source, graph, type(source).__name__)
        by_name = {n.name: n for n in graph.nodes}
        for local, wants in plan.nodes.items():
            node = by_name[local]
            for layer, keys in wants:
                target = f"fxmaps_swap_{len(module._modules)}"
                module.add_submodule(target, _Made(self, layer, keys))
                node = _call_after(graph, node, target)
        module.recompile()
        return module

    def _made(self, layer: Layer, value: Any, keys: tuple[Any, ...]) -> Any:
        """``value`` (what a call or an op made) once ``layer``'s part of it is taken, or with
        a swap, that part replaced by what the swap returns."""
        part = _pick(value, keys)
        if self._swap is None:
            self._take(layer, part)
            return value
        swap = self._swap
        return _replaced(value, keys, self._quiet(lambda: swap(layer, part)))

    def _eager(
        self,
        key: CallKey,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        plan: _CallPlan | None,
    ) -> Any:
        state = self._state
        state.stack.append(key)
        state.op_index[key] = 0
        try:
            if self._watch is not None:
                with self._watch.switched(bool(plan and plan.ops)):
                    return type(module).forward(self._shadows.of(key[0]), *args, **kwargs)
            return type(module).forward(self._shadows.of(key[0]), *args, **kwargs)
        finally:
            state.stack.pop()

    def _op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        state = self._state
        key = state.stack[-1]
        index = state.op_index[key]
        state.op_index[key] = index + 1
        expected = self._capture.ops.get(key, ())
        label = _label(func)
        if index >= len(expected) or expected[index] != label:
            where = current_line() or "an unknown line"
            raise FxmapsError(
                f"the forward of {key[0] or type(self._model).__name__!r} ran other ops "
                f"than when it was analysed (op {index}: {label} where "
                f"{expected[index] if index < len(expected) else 'nothing'} was, at {where}): "
                "its input takes another path through the code. Analyse the model with this "
                "input (fxmaps.analyze(model, inputs)) to extract these maps"
            )
        plan = self._plans[key]
        for layer, keys in plan.ops.get(index, ()):
            result = self._made(layer, result, keys)
        return result

    def _quiet(self, run: Callable[[], Any]) -> Any:
        if self._watch is None:
            return run()
        with self._watch.switched(False):
            return run()

    # -- maps ------------------------------------------------------------------------------

    def _take(self, layer: Layer, value: Any, *, at_end: bool = False) -> None:
        maps, versions, kept = self._state.found
        snapshot = layer.name in self._forced and not at_end
        if snapshot or not self._identity:  # its ops are fxmaps's, not the model's: not watched
            transform = MapTransform(self._options, layer.layout, snapshot)
            maps[layer.name], kept[layer.name] = self._quiet(lambda: transform(value))
        else:
            maps[layer.name], kept[layer.name] = value, None
        tensor = maps[layer.name]
        is_tensor = isinstance(tensor, torch.Tensor) and not tensor.is_inference()
        versions[layer.name] = int(tensor._version) if is_tensor and not at_end else -1

    def _refuse(self, key: CallKey, plan: _CallPlan | None, module: nn.Module) -> None:
        if plan is None:
            return
        names = [layer.name for layer, _ in [*plan.whole, *_flat(plan.nodes), *_flat(plan.ops)]]
        raise FxmapsError(
            f"{type(module).__name__} {key[0]!r} (call {key[1]}) was called with other kinds of "
            f"arguments, or more often, than when the model was analysed, so the maps asked "
            f"for in it ({', '.join(names[:5])}) cannot be taken. Analyse the model with this "
            "input (fxmaps.analyze(model, inputs)) to extract them"
        )


class _Made(nn.Module):
    """What a traced region calls right after a chosen node (``CapturedExtraction._made``)."""

    def __init__(self, runner: CapturedExtraction, layer: Layer, keys: tuple[Any, ...]) -> None:
        super().__init__()
        self._call = (runner, layer, keys)

    def forward(self, value: Any) -> Any:
        runner, layer, keys = self._call
        return runner._made(layer, value, keys)


class _NoWatch:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _tensor_picks(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[int | str]:
    """Where a call's tensor arguments sit, in ``forward``'s order: an index into the
    positional arguments, or a keyword (the same in every call with its fingerprint)."""
    bound = bind(module, Inputs(args, kwargs))
    positional = len(args)
    picks: list[int | str] = []
    for position, (name, value) in enumerate(bound.arguments.items()):
        if isinstance(value, torch.Tensor):
            picks.append(position if position < positional else name)
    return picks


def _split(local: Any) -> tuple[Any, tuple[Any, ...]]:
    if isinstance(local, tuple):
        return local[0], tuple(local[1])
    return local, ()


def _raw(local: str) -> str:
    return f"fxmaps_raw:{local}"


def _unique(chosen: list[tuple[Layer, fx.Node]]) -> list[tuple[Layer, fx.Node]]:
    seen: dict[str, tuple[Layer, fx.Node]] = {}
    for layer, node in chosen:
        seen.setdefault(layer.name, (layer, node))
    return list(seen.values())


def _pick(value: Any, keys: tuple[Any, ...]) -> Any:
    for key in keys:
        value = value[key]
    return value


def _call_after(graph: fx.Graph, node: fx.Node, target: str) -> fx.Node:
    """A call of module ``target`` on ``node``'s value, which ``node``'s users now read."""
    with graph.inserting_after(node):
        made = graph.call_module(target, (node,))
    note(made, name=target, target=target, hidden=True)
    node.replace_all_uses_with(made, delete_user_cb=lambda user: user is not made)
    return made


def _replaced(value: Any, keys: tuple[Any, ...], part: Any) -> Any:
    """``value`` with what ``keys`` pick out of it replaced by ``part`` (rebuilt: tuples,
    named tuples and lists as themselves, a dict, or a shallow copy of a dict's subclass
    such as a model output record)."""
    if not keys:
        return part
    key, rest = keys[0], keys[1:]
    inner = _replaced(value[key], rest, part)
    if isinstance(value, dict):
        rebuilt = {**value} if type(value) is dict else copy.copy(value)
        rebuilt[key] = inner
        return rebuilt
    items = list(value)
    items[key] = inner
    if isinstance(value, tuple):
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return items


def _flat(groups: dict[Any, list[_Want]]) -> list[_Want]:
    return [want for wants in groups.values() for want in wants]


def _label(func: Any) -> str:
    _, target, _ = as_fx_call(func, ())
    return target if isinstance(target, str) else getattr(target, "__name__", "op")


def _attribute(graph: ModelGraph, layer: Layer) -> Any:
    return attribute(graph.graph_module, str(graph.fx_node(layer.name).target))
