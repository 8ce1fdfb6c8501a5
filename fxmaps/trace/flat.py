"""The graph a capture records: one ``fx.Graph`` for the whole run, stitched by tensor identity.

Every value a recorded node produced is remembered by the identity of its tensors
(kept alive for the length of the run, so identities stay unique): the next op or
module call that reads one of those tensors gets an edge from the node that made it.
A tensor nobody recorded is one of the model's parameters or buffers (a
``get_attr`` of its qualified name) or a constant kept on the graph module. Each
node gets its facts (name, target, scopes, region, origin, shape) as it is made.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx, nn

from fxmaps.facts import Origin, Scope, Source, facts, note
from fxmaps.trace.naming import Namer, rename_reserved
from fxmaps.trace.shapes import all_finite, bytes_of, dtype_of, shape_of

__all__ = ["FlatGraph"]

_PLAIN: tuple[type, ...] = (int, float, bool, str, type(None), slice, type(Ellipsis))
_PLAIN += (torch.dtype, torch.device, torch.memory_format, torch.layout)


class FlatGraph:
    """The recorded graph of one run (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.graph = fx.Graph()
        self.namer = Namer(path for path, _ in model.named_modules())
        self._model = model
        self._values: dict[int, fx.Node] = {}
        self._parts: dict[int, tuple[fx.Node, tuple[Any, ...]]] = {}
        self._alive: list[Any] = []
        self._root: dict[str, Any] = {}
        self._named = {
            id(t): name
            for name, t in [
                *model.named_parameters(remove_duplicate=False),
                *model.named_buffers(remove_duplicate=False),
            ]
        }
        self._attrs: dict[int, fx.Node] = {}
        self.first_non_finite: str | None = None
        """The first node whose output held NaN or inf."""
        self.output_finite = True

    # -- values -> nodes -------------------------------------------------------------------

    def arg(self, value: Any) -> Any:
        """``value`` as an fx argument: tensors as the nodes that made them, structure kept."""
        if isinstance(value, torch.Tensor):
            return self._node_of(value)
        if isinstance(value, (tuple, list)):
            items = [self.arg(v) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, Mapping):
            return {k: self.arg(v) for k, v in value.items()}
        if isinstance(value, _PLAIN):
            return value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: self.arg(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return self._constant(value)

    def _node_of(self, tensor: torch.Tensor) -> fx.Node:
        found = self._values.get(id(tensor))
        if found is not None:
            return found
        if id(tensor) in self._parts:
            return self._part(tensor)
        name = self._named.get(id(tensor))
        if name is None:
            return self._constant(tensor)
        if id(tensor) not in self._attrs:
            node = self.graph.get_attr(name)
            self._root[name] = tensor
            note(node, name=self.namer.unique(name)[0], target=name, origin=Origin(Source.CONSTANT))
            note(node, dtype=dtype_of(tensor))
            self._attrs[id(tensor)] = node
        return self._attrs[id(tensor)]

    def _constant(self, value: Any) -> fx.Node:
        if id(value) not in self._attrs:
            target = f"fxmaps_constant_{len(self._attrs)}"
            node = self.graph.get_attr(target)
            self._root[target] = value
            self._alive.append(value)
            origin = Origin(Source.CONSTANT, None, target)
            note(node, name=self.namer.unique(target)[0], target=target, origin=origin)
            note(node, dtype=dtype_of(value))
            self._attrs[id(value)] = node
        return self._attrs[id(value)]

    def produced(self, node: fx.Node, value: Any) -> None:
        """Remember that ``node`` made ``value``: its tensors, and the tensors inside it
        (reached through ``getitem`` nodes, made when something reads them)."""
        note(node, shape=shape_of(value), nbytes=bytes_of(value), dtype=dtype_of(value))
        if self.first_non_finite is None and not all_finite(value):
            self.first_non_finite = facts(node).name
        self._remember(node, value, ())

    def _remember(self, node: fx.Node, value: Any, keys: tuple[Any, ...]) -> None:
        if isinstance(value, torch.Tensor):
            if keys:
                self._parts[id(value)] = (node, keys)
                self._values.pop(id(value), None)
            else:
                self._values[id(value)] = node
                self._parts.pop(id(value), None)
            self._alive.append(value)
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                self._remember(node, item, (*keys, index))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self._remember(node, item, (*keys, key))

    def _part(self, tensor: torch.Tensor) -> fx.Node:
        """The ``getitem`` chain that picks ``tensor`` out of the value its node made."""
        node, keys = self._parts.pop(id(tensor))
        made = facts(node)
        base = made.origin.local if made.origin else None
        base = base[0] if isinstance(base, tuple) else base
        part = node
        for depth in range(len(keys)):
            part = self.graph.call_function(operator.getitem, (part, keys[depth]))
            local = (base, keys[: depth + 1])
            origin = Origin(made.origin.source, made.origin.call, local) if made.origin else None
            note(
                part,
                name=self.namer.unique(f"{made.name}.getitem")[0],
                target="getitem",
                scopes=made.scopes,
                region=made.region,
                origin=origin,
            )
        note(part, shape=shape_of(tensor), nbytes=bytes_of(tensor), dtype=tensor.dtype)
        self._values[id(tensor)] = part
        return part

    # -- nodes -----------------------------------------------------------------------------

    def placeholder(self, name: str, value: torch.Tensor, index: int) -> None:
        """An input tensor, named by where it sits in the arguments (``images.0``)."""
        node = self.graph.placeholder(_identifier(name))
        note(
            node,
            name=self.namer.unique(name)[0],
            target=name,
            origin=Origin(Source.INPUT, None, index),
        )
        self.produced(node, value)

    def add(
        self,
        op: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        scopes: tuple[Scope, ...],
        region: str | None,
        origin: Origin,
    ) -> fx.Node:
        """A node reading ``args``/``kwargs`` (already fx arguments), with its facts."""
        node = self.graph.create_node(op, target, args, kwargs)
        shown = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        note(node, name=name, target=shown, scopes=scopes, region=region, origin=origin)
        return node

    def call_module(self, path: str, module: nn.Module) -> str:
        """The target under which ``module`` (at ``path`` in the model) is called."""
        self._root[path] = module
        return path

    def attribute(self, target: str, value: Any) -> None:
        """Keep ``value`` on the graph module under ``target`` (a ``get_attr`` reads it)."""
        self._root[target] = value

    def output(self, value: Any) -> None:
        """The model's output, made of the nodes that produced its tensors."""
        self.output_finite = all_finite(value)
        node = self.graph.output(self.arg(value))
        note(node, name="output", target="output", origin=Origin(Source.OUTPUT))

    def graph_module(self, class_name: str) -> fx.GraphModule:
        """The graph module over the model's own modules and attributes (and constants)."""
        rename_reserved(self.graph)
        root = {
            str(n.target): self._root[facts(n).target]
            for n in self.graph.nodes
            if n.op in ("call_module", "get_attr")
        }
        self._alive.clear()
        return fx.GraphModule(root, self.graph, class_name)


def _identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"input_{cleaned}"
