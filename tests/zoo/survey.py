"""One model through the whole pipeline, checked against oracles fxmaps does not share.

:func:`survey` builds a zoo model and runs ``analyze`` -> ``extract`` -> ``render_graph``:

* ``analyze(model, x)`` with one sample; the counts of the report come from it;
* the traced graph computes, bit for bit, what the model computes (``model(x)``);
* ``extract`` of a few nodes of each kind (first and last conv, a downsample, first and
  last add, first and last linear, an attention node, every opaque module up to a few):
  each module node's map equals, bit for bit, what a forward hook on that module call
  captured when the model ran by itself; each other node's map has the node's shape;
* ``render_graph(g, collapse="blocks")`` builds its DOT source, and the full diagram
  marks exactly the opaque modules.

It returns a :class:`Record`, the report's row, with the failure's stage, exception type
and one-line cause. ``raise_errors=True`` re-raises instead (what the tests use).
"""

from __future__ import annotations

import re
import time
import traceback
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

import fxmaps
from fxmaps.render.graph import render_graph
from tests.oracles import hooked
from tests.zoo.catalog import ZooModel, build_with_input

__all__ = ["Record", "choose_layers", "survey"]

OPAQUE_MARK = "<I>opaque</I>"
"""How ``render_graph`` marks an opaque module's box."""
MAX_OPAQUE = 3


@dataclass
class Record:
    """What the survey learned about one model: the report's row."""

    zoo: str
    model: str
    ok: bool = False
    input_shape: list[int] = field(default_factory=list)
    nodes: int = 0
    conv: int = 0
    downsample: int = 0
    linear: int = 0
    attention: int = 0
    residual: int = 0
    sequential: int = 0
    opaque: list[str] = field(default_factory=list)
    opaque_why: dict[str, str] = field(default_factory=dict)
    """Per opaque module type: why fxmaps could not trace it, and where."""
    autowrapped: list[str] = field(default_factory=list)
    collapsed_nodes: int = 0
    checked: list[str] = field(default_factory=list)
    analyze_s: float = 0.0
    total_s: float = 0.0
    stage: str = ""
    """The check that failed: build, analyze, model run, graph output, extract, ..."""
    error: str = ""
    cause: str = ""
    trace: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StageError(Exception):
    """A check of the survey failed; the message says what differs."""


def survey(entry: ZooModel, *, raise_errors: bool = False) -> Record:
    """Build ``entry`` and check it through the pipeline; see the module docstring."""
    record = Record(entry.zoo, entry.name)
    start = time.perf_counter()
    try:
        _run(entry, record)
        record.ok, record.stage = True, ""
    except Exception as err:
        if raise_errors:
            raise
        record.error = type(err).__name__
        record.cause = _one_line(err)
        record.trace = traceback.format_exc(limit=-12)
    finally:
        record.total_s = round(time.perf_counter() - start, 3)
    return record


def _run(entry: ZooModel, record: Record) -> None:
    """The checks, in order; ``record.stage`` says which one runs (the one that failed)."""
    record.stage = "build"
    model, x = build_with_input(entry)
    record.input_shape = list(x.shape)

    record.stage = "analyze"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxmaps.FxmapsWarning)
        g = fxmaps.analyze(model, x)
    record.analyze_s = round(time.perf_counter() - start, 3)
    _count(g, record)

    chosen = choose_layers(g)
    record.checked = [layer.name for layer in chosen]
    record.stage = "model run"
    targets = {layer.target for layer in chosen if layer.module is not None}
    with hooked(model, targets) as seen, torch.no_grad():
        expected = model(x.clone())

    record.stage = "graph output"
    with torch.no_grad():
        traced = g.graph_module(x.clone())
    _same(traced, expected, "the traced graph's output", "model(x)")

    record.stage = "extract"
    maps = fxmaps.extract(g, x.clone(), layers=[layer.name for layer in chosen])
    record.stage = "extract oracle"
    _check_maps(chosen, maps, seen, _call_index(g))

    record.stage = "render"
    collapsed = render_graph(g, collapse="blocks").source
    record.collapsed_nodes = _node_count(collapsed)
    full = render_graph(g).source
    drawn_opaque = full.count(OPAQUE_MARK)
    if drawn_opaque != sum(layer.opaque for layer in g.layers()):
        raise StageError(
            f"render_graph marks {drawn_opaque} boxes opaque, the graph has "
            f"{[o.name for o in g.opaque]}"
        )


def _count(g: fxmaps.ModelGraph, record: Record) -> None:
    info = g.info()
    record.nodes = len(g.layers())
    for key in ("conv", "downsample", "linear", "attention", "residual", "sequential"):
        setattr(record, key, int(info.get(key, 0)))
    record.opaque = [f"{o.name} ({o.module_type})" for o in g.opaque]
    for o in g.opaque:
        where = o.location.rpartition("site-packages/")[2] if o.location else ""
        record.opaque_why.setdefault(o.module_type, f"{o.reason} at {where}" if where else o.reason)
    record.autowrapped = list(g.autowrapped)


def choose_layers(g: fxmaps.ModelGraph) -> list[fxmaps.Layer]:
    """A few nodes of each kind, in execution order, without repeats."""
    picks: list[fxmaps.Layer] = []
    for kind in ("conv", "downsample", "add", "linear", "attention"):
        layers = g.layers(kind)
        picks += layers[:1] + layers[-1:] if kind != "downsample" else layers[:1]
    picks += [layer for layer in g.layers() if layer.opaque][:MAX_OPAQUE]
    order = {layer.name: i for i, layer in enumerate(g.layers())}
    unique = {layer.name: layer for layer in picks}
    return sorted(unique.values(), key=lambda layer: order[layer.name])


def _check_maps(
    chosen: list[fxmaps.Layer],
    maps: fxmaps.FeatureMaps,
    seen: dict[str, list[Any]],
    calls: dict[str, int],
) -> None:
    """Module nodes against the hooks' outputs of the same call; other nodes by shape."""
    for layer in chosen:
        got = maps.get(layer.name, None)
        if layer.module is None or layer.name not in calls:
            shape = None if got is None else tuple(got.shape)
            if shape is not None and layer.out_shape is not None and shape != layer.out_shape:
                raise StageError(f"{layer.name}: a map of {shape}, {layer.out_shape} expected")
            continue
        outputs = seen.get(layer.target, [])
        index = calls[layer.name]
        if index >= len(outputs):
            raise StageError(
                f"{layer.name}: a hook on {layer.target!r} saw {len(outputs)} calls, the graph "
                f"has call {index + 1}"
            )
        if got is None:
            if isinstance(outputs[index], torch.Tensor):
                raise StageError(f"{layer.name}: no map for a module that returns a tensor")
            continue
        _same(got, outputs[index], f"the map of {layer.name!r}", "the forward hook's output")


def _call_index(g: fxmaps.ModelGraph) -> dict[str, int]:
    """Which call of its module each module node is, counted in execution order."""
    seen: dict[str, int] = defaultdict(int)
    index: dict[str, int] = {}
    for layer in g.layers():
        if layer.module is not None:
            index[layer.name] = seen[layer.target]
            seen[layer.target] += 1
    return index


def _same(got: Any, expected: Any, what: str, oracle: str) -> None:
    try:
        torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    except AssertionError as err:
        raise StageError(f"{what} differs from {oracle}: {_one_line(err)}") from err


def _node_count(source: str) -> int:
    return sum(1 for line in source.splitlines() if "[label=" in line and "->" not in line)


def _one_line(err: BaseException) -> str:
    """The message's first two lines, without memory addresses (stable across runs)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return re.sub(r" at 0x[0-9a-f]+", "", " ".join(lines[:2]))[:300]
