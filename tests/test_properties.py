"""Property-based tests: random models against oracles that fxmaps does not share.

``tests/generated_models.py`` draws small random models (Conv1d/2d/3d, transposed and
functional convs; nested ``nn.Sequential`` and ``nn.ModuleList``; residual blocks with
identity, projection, pooling and any-part shortcuts; multi-branch merges,
concatenations and gates; functional ops and in-place activations and adds; modules
called twice and module instances used at two places) together with what it placed in
them. For each model:

* ``analyze`` succeeds, with nothing opaque (on these valid models it must not even raise
  an ``FxmapsError``, the only kind of error it may raise);
* the conv and downsample module nodes are the conv module calls forward hooks see, call
  for call (a module called twice counts twice), and the linear nodes the linear calls;
* conv, downsample, residual, sequential and linear counts, and residuals by skip kind,
  are the generator's own; each downsample conv lies on its residual's shortcut and in
  its block; the parameter total is the model's;
* ``extract`` returns, bit for bit, what forward hooks on the same input capture (cloned
  when the hook runs) for every module node, the output shapes ``analyze`` gives are
  theirs, the ``output`` map is the model's output, and the model is left as it was;
* ``render_graph`` draws every conv node, ``collapse="blocks"`` every conv or a block
  around it, and both diagrams are acyclic.

The runs are reproducible: hypothesis draws ``EXAMPLES`` models (60) from seed ``SEED``
(8), with no example database. ``FXMAPS_HYPOTHESIS_EXAMPLES=1000`` draws more and
``FXMAPS_HYPOTHESIS_SEED=N`` draws other ones, for a longer hunt on a developer machine.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter, defaultdict

import networkx as nx
import pytest
import torch
from hypothesis import given, note, seed, settings
from torch import nn

import fxmaps
from fxmaps import Kind, ModelGraph, SkipKind
from tests.generated_models import FEATURES, ModelSpec, features, model_specs
from tests.oracles import hook_outputs, module_calls

DEFAULT_EXAMPLES = 60
DEFAULT_SEED = 8  # its 60 models cover every part of the generator (see the last test)
EXAMPLES = int(os.environ.get("FXMAPS_HYPOTHESIS_EXAMPLES", DEFAULT_EXAMPLES))
SEED = int(os.environ.get("FXMAPS_HYPOTHESIS_SEED", DEFAULT_SEED))

properties = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the first trace of a model warms up torch.fx; timings vary
    database=None,  # the same examples on every run, whatever ran before
    print_blob=True,
)

_ID = r'"(?:[^"\\]|\\.)*"|[\w.]+'
_NODE = re.compile(rf"^\t*({_ID}) \[label=", re.MULTILINE)
_EDGE = re.compile(rf"^\t*({_ID}) -> ({_ID})", re.MULTILINE)


def analyzed(spec: ModelSpec) -> tuple[nn.Module, torch.Tensor, ModelGraph]:
    """The spec's model, its input, and its graph (analysed on a copy of the input)."""
    note(spec.describe())
    model, x = spec.build(), spec.example_input()
    try:
        graph = fxmaps.analyze(model, x.clone())
    except fxmaps.FxmapsError as err:
        pytest.fail(f"analyze rejected a valid model: {type(err).__name__}: {err}")
    assert graph.opaque == ()
    return model, x, graph


def module_nodes(graph: ModelGraph, *kinds: Kind) -> Counter[str]:
    """The module (qualified name) behind each module node of these kinds, with repeats."""
    return Counter(layer.target for layer in graph.layers(kinds) if layer.module is not None)


def census(graph: ModelGraph) -> dict[str, int]:
    """What fxmaps found, in the generator's terms (:class:`Truth`'s fields)."""
    info = graph.info()
    skips = Counter(r.skip for r in graph.residuals())
    convs = graph.layers([Kind.CONV, Kind.DOWNSAMPLE])
    return {
        "convs": len(convs),
        "downsample": info["downsample"],
        "residual": info["residual"],
        "sequential": info["sequential"],
        "linear": info["linear"],
        "functional_convs": sum(layer.module is None for layer in convs),
        "identity_skips": skips[SkipKind.IDENTITY],
        "projection_skips": skips[SkipKind.PROJECTION],
        "parameter_free_skips": skips[SkipKind.PARAMETER_FREE],
    }


def enclosing(graph: ModelGraph, name: str) -> list[str]:
    """The blocks around a layer, innermost first."""
    parents = {block.name: block.parent for block in graph.blocks()}
    chain, block = [], graph[name].block
    while block is not None:
        chain.append(block)
        block = parents[block]
    return chain


def _unquote(token: str) -> str:
    return token[1:-1].replace('\\"', '"') if token.startswith('"') else token


def drawn(dot_source: str) -> nx.DiGraph[str]:
    """The nodes and edges of a DOT source."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(_unquote(token) for token in _NODE.findall(dot_source))
    graph.add_edges_from((_unquote(a), _unquote(b)) for a, b in _EDGE.findall(dot_source))
    return graph


@seed(SEED)
@properties
@given(model_specs())
def test_counts_match_forward_hooks_and_the_generator(spec: ModelSpec) -> None:
    model, x, graph = analyzed(spec)
    seen = hook_outputs(model, x.clone())
    conv_calls = module_calls(model, seen, nn.modules.conv._ConvNd)
    assert module_nodes(graph, Kind.CONV, Kind.DOWNSAMPLE) == conv_calls
    assert module_nodes(graph, Kind.LINEAR) == module_calls(model, seen, nn.Linear)
    assert census(graph) == dataclasses.asdict(spec.truth)
    assert len(graph.residuals()) == spec.truth.residual  # one add in each residual block
    # A conv on the shortcut of nested residuals is a downsample conv of each of them.
    downsample = [(name, r.block) for r in graph.residuals() for name in r.downsample]
    assert {name for name, _ in downsample} == {layer.name for layer in graph.layers("downsample")}
    assert all(block in enclosing(graph, name) for name, block in downsample)
    assert graph.total_params == sum(p.numel() for p in model.parameters())


@seed(SEED)
@properties
@given(model_specs())
def test_extracted_maps_equal_forward_hooks(spec: ModelSpec) -> None:
    model, x, graph = analyzed(spec)
    layers = [layer for layer in graph.layers() if layer.module is not None]
    maps = fxmaps.extract(graph, x.clone(), layers=[*(layer.name for layer in layers), "output"])
    seen = hook_outputs(model, x.clone())
    used: defaultdict[str, int] = defaultdict(int)  # calls of each module matched so far
    for layer in layers:
        expected = seen[layer.target][used[layer.target]]
        used[layer.target] += 1
        assert torch.equal(maps[layer.name], expected), layer.name
        assert layer.out_shape == tuple(expected.shape), layer.name
    leaves = {  # torch.nn's own modules, which torch.fx keeps whole, except containers
        name
        for name, m in model.named_modules()
        if type(m).__module__.startswith("torch.nn.") and not isinstance(m, nn.Sequential)
    }
    assert used == {name: len(seen[name]) for name in leaves if seen[name]}
    with torch.no_grad():
        assert torch.equal(maps["output"], model(x.clone()))
    assert not maps.skipped
    assert_unchanged(model, spec.build())


def assert_unchanged(model: nn.Module, fresh: nn.Module) -> None:
    """``model`` has the modes, parameters and buffers of a fresh build of its spec."""
    assert [m.training for m in model.modules()] == [m.training for m in fresh.modules()]
    state, fresh_state = model.state_dict(), fresh.state_dict()
    assert state.keys() == fresh_state.keys()
    assert all(torch.equal(state[key], fresh_state[key]) for key in state)


@seed(SEED)
@properties
@given(model_specs())
def test_render_graph_draws_every_conv(spec: ModelSpec) -> None:
    _, _, graph = analyzed(spec)
    convs = graph.layers([Kind.CONV, Kind.DOWNSAMPLE])
    full = drawn(fxmaps.render_graph(graph).source)
    assert {layer.name for layer in convs} <= set(full)
    collapsed = drawn(fxmaps.render_graph(graph, collapse="blocks").source)
    for layer in convs:  # the conv, or a block around it, is a node
        assert set(collapsed) & {layer.name, *enclosing(graph, layer.name)}, layer.name
    assert nx.is_directed_acyclic_graph(full)
    assert nx.is_directed_acyclic_graph(collapsed)


def test_the_examples_cover_every_part() -> None:
    """The models the tests above draw hold every part the generator can place.

    Hypothesis draws the same models for the same seed, count and strategy; a change to
    the generator (or to hypothesis) can draw others. If this fails, choose a seed whose
    models cover every part: ``FXMAPS_HYPOTHESIS_SEED=N pytest -k cover`` checks one.
    """
    found: Counter[str] = Counter()

    @seed(SEED)
    @properties
    @given(model_specs())
    def collect(spec: ModelSpec) -> None:
        found.update(features(spec))

    collect()
    assert sorted(FEATURES - set(found)) == []
