"""One model of :mod:`tests.zoo.any_model` through fxmaps, checked against forward hooks.

:func:`check` builds the model and its inputs and asserts what "any model" promises:

* every conv and linear module call that forward hooks see while the model runs by
  itself is a node of ``analyze(model, inputs)``, matched by module path and call index;
* ``extract`` of all of them gives, bit for bit, what the hooks cloned the moment each
  call returned;
* the graph draws (its DOT source names every one of those nodes);
* the model is left as it was.

It returns a :class:`Checked` row for the report: the calls, the eager regions, the nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

import fxmaps
from tests.oracles import assert_unchanged, hooked, snapshot
from tests.zoo.any_model import AnyModel, is_layer

__all__ = ["Checked", "check"]


@dataclass
class Checked:
    """What :func:`check` saw of one model."""

    family: str
    model: str
    calls: int = 0
    """Conv and linear module calls the hooks saw."""
    nodes: int = 0
    eager: list[str] = field(default_factory=list)
    """The module calls that ran as Python (``ModelGraph.eager``)."""
    seconds: float = 0.0


def check(entry: AnyModel) -> Checked:
    """Run the checks of the module docstring; an ``AssertionError`` says which failed."""
    model, inputs = entry.build()
    before = snapshot(model)
    expected = _layer_calls(model, inputs)
    start = time.perf_counter()
    graph = fxmaps.analyze(model, inputs)
    nodes = _nodes_of_calls(graph)
    missing = [call for call in expected if call not in nodes]
    assert not missing, f"{entry.name}: calls with no node: {missing[:5]} of {len(missing)}"
    maps = fxmaps.extract(graph, inputs, layers=[nodes[call] for call in expected])
    for call, output in expected.items():
        got = maps[nodes[call]]
        assert torch.equal(got, output), f"{entry.name}: {nodes[call]} differs from the hook"
    source = fxmaps.render_graph(graph).source
    assert all(f'"{nodes[call]}"' in source or f"\t{nodes[call]} " in source for call in expected)
    assert_unchanged(model, before)
    return Checked(
        entry.family,
        entry.name,
        calls=len(expected),
        nodes=len(graph),
        eager=[region.name for region in graph.eager],
        seconds=time.perf_counter() - start,
    )


def _layer_calls(model: nn.Module, inputs: fxmaps.Inputs) -> dict[tuple[str, int], torch.Tensor]:
    """Each conv and linear call's output, cloned by a forward hook, by (path, call index)."""
    names = [name for name, module in model.named_modules() if name and is_layer(module)]
    with hooked(model, names) as seen, torch.no_grad():
        inputs.call(model)
    return {(name, i): out for name in names for i, out in enumerate(seen.get(name, []))}


def _nodes_of_calls(graph: fxmaps.ModelGraph) -> dict[tuple[str, int], str]:
    """The node of each module call, by (path, call index), in execution order."""
    counts: dict[str, int] = {}
    found: dict[tuple[str, int], str] = {}
    for layer in graph.layers():
        if layer.module is not None:
            index = counts.get(layer.target, 0)
            counts[layer.target] = index + 1
            found[(layer.target, index)] = layer.name
    return found
