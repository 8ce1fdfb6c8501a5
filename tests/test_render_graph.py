"""render_graph and save_graph: the structure of the DOT source and the SVG, not pixels.

Oracles are the analysed graph itself: its layer names and kinds, its blocks, and the
roles of its networkx edges.
"""

from __future__ import annotations

import itertools
import re
import shutil
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import graphviz
import networkx as nx
import pytest
import torch
import torchvision

import fxmaps
from fxmaps import Kind, ModelGraph
from fxmaps.classify.blocks import ROLE_SHORTCUT, ROLE_SKIP
from fxmaps.errors import OptionError
from fxmaps.graph import Layer
from fxmaps.graph.model_graph import ATTR_ROLE, ROLE_DATA
from fxmaps.render.graph import KIND_COLORS, render_graph, save_graph
from tests import models as toy
from tests.conftest import tv_model

requires_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot program is not installed"
)

_ID = r'"(?:[^"\\]|\\.)*"|[\w.]+'
_NODE = re.compile(rf"^\t*({_ID}) \[label=<(.*)>[^>]*\]$", re.MULTILINE)
_EDGE = re.compile(rf"^\t*({_ID}) -> ({_ID})(?: \[(.*)\])?$", re.MULTILINE)
_SUBGRAPH = re.compile(rf"^\t*subgraph ({_ID}) \{{$")


def _unquote(token: str) -> str:
    return token[1:-1].replace('\\"', '"') if token.startswith('"') else token


def nodes(dot: graphviz.Digraph) -> dict[str, str]:
    """Node id -> the rest of its statement (label and attributes)."""
    return {_unquote(m[1]): m[0] for m in _NODE.finditer(dot.source)}


def edges(dot: graphviz.Digraph) -> list[tuple[str, str, str]]:
    return [(_unquote(m[1]), _unquote(m[2]), m[3] or "") for m in _EDGE.finditer(dot.source)]


def legend(dot: graphviz.Digraph) -> str:
    source = dot.source
    return source[source.index("<TABLE") : source.index("</TABLE>")]


def live(graph: ModelGraph) -> set[str]:
    """Layers whose values reach an output: the ones a diagram draws (or folds)."""
    outputs = [layer.name for layer in graph.layers("output")]
    return set(outputs).union(*(nx.ancestors(graph.nx, name) for name in outputs))


def shape_change(graph: ModelGraph, members: list[Layer]) -> str:
    """``in → out`` of a chain of layers: what feeds its first layer, what its last gives."""
    names = {layer.name for layer in members}
    feeds = [p for p in graph.nx.predecessors(members[0].name) if p not in names]
    assert len(feeds) == 1
    shapes = (graph[feeds[0]].out_shape, members[-1].out_shape)
    return " → ".join(fxmaps.format_shape(shape) for shape in shapes)


def cluster_parents(dot: graphviz.Digraph) -> dict[str, str | None]:
    """Each cluster's enclosing cluster, from the nesting of the DOT source."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in dot.source.splitlines():
        match = _SUBGRAPH.match(line)
        if match:
            name = _unquote(match[1])
            parents[name] = stack[-1] if stack else None
            stack.append(name)
        elif line.strip() == "}" and stack:
            stack.pop()
    return parents


@pytest.fixture(scope="module")
def resnet18() -> ModelGraph:
    return fxmaps.analyze(tv_model("resnet18"), torch.zeros(1, 3, 64, 64))


@pytest.fixture(scope="module")
def cifar() -> ModelGraph:
    return fxmaps.analyze(toy.CifarResNet(), torch.zeros(1, 3, 16, 16))


@pytest.fixture(scope="module")
def vit() -> ModelGraph:
    return fxmaps.analyze(tv_model("vit_b_16"))


def test_returns_a_digraph_with_one_node_per_layer(resnet18: ModelGraph) -> None:
    dot = render_graph(resnet18)
    assert isinstance(dot, graphviz.Digraph)
    assert set(nodes(dot)) == {layer.name for layer in resnet18.layers()}
    assert len(edges(dot)) == resnet18.nx.number_of_edges()


# Toy models for the golden DOT sources: residual blocks with a projection shortcut
# (CifarResNet), a merge of two branches then an identity skip (MultiBranch), and a
# residual block called twice (SharedBlock).
GOLDEN_TOYS = {"cifar_resnet": toy.CifarResNet, "multi_branch": toy.MultiBranch,
               "shared_block": toy.SharedBlock}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "collapse"),
    [("cifar_resnet", "none"), ("cifar_resnet", "blocks"), ("multi_branch", "none"),
     ("shared_block", "none")],
)  # fmt: skip
def test_dot_source_golden(name: str, collapse: str, golden: Callable[[str, str], None]) -> None:
    graph = fxmaps.analyze(GOLDEN_TOYS[name](), torch.zeros(1, 3, 16, 16))
    dot = fxmaps.render_graph(graph, collapse=collapse)
    drawn = set(nodes(dot))
    if collapse == "none":
        assert drawn == live(graph)
    else:
        assert {residual.block for residual in graph.residuals()} <= drawn
    golden(f"dot/{name}{'' if collapse == 'none' else '_' + collapse}.dot", dot.source)


@pytest.mark.parametrize("model", ["resnet18", "cifar"])
def test_every_conv_and_downsample_is_in_the_source(
    model: str, request: pytest.FixtureRequest
) -> None:
    graph: ModelGraph = request.getfixturevalue(model)
    expected = [layer.name for layer in graph.layers(["conv", "downsample"])]
    assert expected
    assert graph.layers("downsample")
    drawn = nodes(render_graph(graph))
    for name in expected:
        assert name in drawn
        assert f"<B>{name}</B>" in drawn[name]


@requires_dot
@pytest.mark.parametrize("model", ["resnet18", "efficientnet_b0", "vit_b_16"])
def test_every_conv_and_downsample_is_in_the_svg(
    model: str, request: pytest.FixtureRequest
) -> None:
    fixtures = {"resnet18": "resnet18", "vit_b_16": "vit"}
    if model in fixtures:
        graph: ModelGraph = request.getfixturevalue(fixtures[model])
    else:
        graph = fxmaps.analyze(tv_model(model))
    svg = render_graph(graph).pipe(format="svg", encoding="utf-8")
    names = [layer.name for layer in graph.layers(["conv", "downsample"])]
    assert len(names) >= (1 if model == "vit_b_16" else 10)
    for name in names:
        assert f"<title>{name}</title>" in svg
        assert f">{name}</text>" in svg


def test_label_shows_type_shape_and_parameters(resnet18: ModelGraph) -> None:
    conv = resnet18["layer2.0.conv1"]
    label = nodes(render_graph(resnet18))[conv.name]
    assert "Conv2d" in label
    assert fxmaps.format_shape(conv.out_shape) in label
    assert f"{conv.params / 1e3:.1f}K params" in label
    quiet = nodes(render_graph(resnet18, show_shapes=False))[conv.name]
    assert fxmaps.format_shape(conv.out_shape) not in quiet


def test_clusters_nest_like_blocks(resnet18: ModelGraph) -> None:
    dot = render_graph(resnet18)
    parents = cluster_parents(dot)
    blocks = resnet18.blocks()
    assert {f"cluster_{b.name}" for b in blocks} == set(parents)
    for block in blocks:
        parent = f"cluster_{block.parent}" if block.parent else None
        assert parents[f"cluster_{block.name}"] == parent
    assert "<B>layer1.0</B>  BasicBlock · residual" in dot.source


def test_collapse_blocks_draws_each_residual_block_as_one_node(resnet18: ModelGraph) -> None:
    full = render_graph(resnet18)
    dot = render_graph(resnet18, collapse="blocks")
    drawn = nodes(dot)
    residual = resnet18.blocks("residual")
    assert len(drawn) < len(nodes(full))
    owner = {name: block.name for block in residual for name in block.layers}
    assert set(drawn) == {owner.get(layer.name, layer.name) for layer in resnet18.layers()}
    for block in residual:
        assert f"<B>{block.name}</B>" in drawn[block.name]
        assert block.module_type in drawn[block.name]
    assert "1×64×16×16 → 1×128×8×8" in drawn["layer2.0"]  # the block's shape change
    assert set(cluster_parents(dot)) == {f"cluster_{b.name}" for b in resnet18.blocks("sequential")}


def test_collapsed_edges_come_from_the_graph_once_each(resnet18: ModelGraph) -> None:
    owner = {name: b.name for b in resnet18.blocks("residual") for name in b.layers}
    expected = {
        (owner.get(u, u), owner.get(v, v))
        for u, v in resnet18.nx.edges
        if owner.get(u, u) != owner.get(v, v)
    }
    drawn = [(tail, head) for tail, head, _ in edges(render_graph(resnet18, collapse="blocks"))]
    assert len(drawn) == len(set(drawn))
    assert set(drawn) == expected


def test_collapse_blocks_keeps_vit_stem_and_folds_parameters(vit: ModelGraph) -> None:
    graph = vit
    full, collapsed = nodes(render_graph(graph)), nodes(render_graph(graph, collapse="blocks"))
    parameters = [layer.name for layer in graph.layers("parameter")]
    assert parameters
    assert not set(parameters) & set(full)
    assert set(full) == live(graph) - set(parameters)  # dead ends (shape asserts) are hidden
    assert "+ class_token" in full["expand"]
    layers = [b.name for b in graph.blocks("residual")]
    assert len(layers) == 12
    assert set(layers) <= set(collapsed)
    assert len(collapsed) < len(full) / 4


def test_collapse_by_depth(resnet18: ModelGraph) -> None:
    drawn = nodes(render_graph(resnet18, collapse=1))
    top = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    assert set(drawn) == {"x", *top, "avgpool", "flatten", "fc", "output"}
    assert "Sequential" in drawn["layer1"]
    depth2 = nodes(render_graph(resnet18, collapse=2))
    assert {"layer1.0", "layer4.1", "conv1"} <= set(depth2)
    assert not any(name.count(".") > 1 for name in depth2)


def _groups(graph: ModelGraph, collapse: str | int) -> dict[str, tuple[str, list[Layer]]]:
    """Oracle: group node name -> (module type, member layers in execution order)."""
    if collapse == "blocks":
        blocks = {b.name: b for b in graph.blocks("residual")}
        owner = {name: b.name for b in blocks.values() for name in b.layers}
        types = {name: block.module_type for name, block in blocks.items()}
    else:
        assert isinstance(collapse, int)
        parts = {layer.name: layer.name.split(".") for layer in graph.layers()}
        owner = {n: ".".join(p[:collapse]) for n, p in parts.items() if len(p) > collapse}
        types = {key: type(graph.model.get_submodule(key)).__name__ for key in owner.values()}
    groups: dict[str, tuple[str, list[Layer]]] = {key: (t, []) for key, t in types.items()}
    for layer in graph.layers():
        if layer.name in owner:
            groups[owner[layer.name]][1].append(layer)
    return groups


@pytest.mark.parametrize("collapse", ["blocks", 1, 2])
def test_collapsed_groups_show_name_type_count_and_shape_change(
    resnet18: ModelGraph, collapse: str | int
) -> None:
    drawn = nodes(render_graph(resnet18, collapse=collapse))
    groups = _groups(resnet18, collapse)
    assert len(groups) >= 4
    assert len(drawn) < len(nodes(render_graph(resnet18)))
    grouped = {layer.name for _, members in groups.values() for layer in members}
    assert set(drawn) == set(groups) | {layer.name for layer in resnet18.layers()} - grouped
    for name, (module_type, members) in groups.items():
        label = drawn[name]
        assert f"<B>{name}</B>" in label
        assert module_type in label
        assert f"{len(members)} nodes" in label
        assert shape_change(resnet18, members) in label


def test_collapsed_block_that_holds_a_downsample_is_marked(resnet18: ModelGraph) -> None:
    dot = render_graph(resnet18, collapse="blocks")
    drawn = nodes(dot)
    residual = resnet18.blocks("residual")
    holders = {
        b.name for b in residual if any(resnet18[n].kind is Kind.DOWNSAMPLE for n in b.layers)
    }
    assert holders == {"layer2.0", "layer3.0", "layer4.0"}
    border = re.compile(r'(?<!fill)color="#e6550d"')
    assert {name for name, attrs in drawn.items() if border.search(attrs)} == holders
    assert {name for name, attrs in drawn.items() if " · downsample · " in attrs} == holders
    assert "holds downsample" in legend(dot)
    assert "holds downsample" not in legend(render_graph(resnet18))
    by_depth = nodes(render_graph(resnet18, collapse=2))  # a module holds one too
    assert {name for name, attrs in by_depth.items() if border.search(attrs)} == holders


def test_dead_ends_are_hidden_and_counted_in_the_legend(resnet18: ModelGraph) -> None:
    graph = fxmaps.analyze(toy.ShapeChecks(), torch.zeros(1, 3, 8, 8))
    dead = {layer.name for layer in graph.layers()} - live(graph)
    assert dead == {"getattr", "getitem", "eq", "_assert", "dim", "eq_1", "_assert_1"}
    dot = render_graph(graph)
    assert set(nodes(dot)) == {"x", "conv", "output"}
    assert {(tail, head) for tail, head, _ in edges(dot)} == {("x", "conv"), ("conv", "output")}
    assert "7 dead ends not drawn" in legend(dot)
    shown = render_graph(graph, highlight="eq")  # a highlighted dead end shows with its sources
    assert set(nodes(shown)) == {"x", "getattr", "getitem", "eq", "conv", "output"}
    assert ("getitem", "eq") in {(tail, head) for tail, head, _ in edges(shown)}
    assert "4 dead ends not drawn" in legend(shown)
    assert "dead ends" not in legend(render_graph(resnet18))


def test_vit_dead_ends_leave_blocks_and_legend(vit: ModelGraph) -> None:
    dead = {layer.name for layer in vit.layers()} - live(vit)
    assert len(dead) > 12  # the shape asserts of each encoder layer, unused attention weights
    for collapse in ("none", "blocks", 1):
        dot = render_graph(vit, collapse=collapse)
        assert f"{len(dead)} dead ends not drawn" in legend(dot)
        assert not dead & set(nodes(dot))
    drawn = nodes(render_graph(vit, collapse="blocks"))
    for block in vit.blocks("residual"):
        assert f"{len(set(block.layers) - dead)} nodes" in drawn[block.name]


def test_small_nodes_leave_room_around_their_names(vit: ModelGraph) -> None:
    small = {layer.name for layer in vit.layers(["other", "dropout"])}
    drawn = nodes(render_graph(vit))
    margins = [re.search(r'margin="([\d.]+),([\d.]+)"', drawn[name]) for name in small & set(drawn)]
    assert len(margins) > 20
    for margin in margins:
        assert margin is not None
        assert float(margin[1]) >= 0.08
        assert float(margin[2]) >= 0.04


def test_rankdir_is_set(resnet18: ModelGraph) -> None:
    assert "rankdir=LR" in render_graph(resnet18, rankdir="LR").source


def test_skip_and_shortcut_edges_look_different(resnet18: ModelGraph) -> None:
    drawn = {(tail, head): attrs for tail, head, attrs in edges(render_graph(resnet18))}
    looks: dict[str, set[str]] = {ROLE_DATA: set(), ROLE_SKIP: set(), ROLE_SHORTCUT: set()}
    for u, v, attrs in resnet18.nx.edges(data=True):
        looks[attrs[ATTR_ROLE]].add(drawn[(u, v)])
    assert all(len(attrs) == 1 for attrs in looks.values()), looks
    data, skip, shortcut = (looks[r].pop() for r in (ROLE_DATA, ROLE_SKIP, ROLE_SHORTCUT))
    assert data == ""
    assert "style=dashed" in skip
    assert "style" not in shortcut
    skip_color, shortcut_color = (re.findall(r"color=(\S+)", a) for a in (skip, shortcut))
    assert skip_color
    assert shortcut_color
    assert skip_color != shortcut_color


def test_legend_lists_the_kinds_present(resnet18: ModelGraph) -> None:
    source = render_graph(resnet18).source
    legend = source[source.index("<TABLE") : source.index("</TABLE>")]
    entries = set(re.findall(r'<FONT POINT-SIZE="10">([^<]+)</FONT>', legend))
    kinds = {layer.kind.value for layer in resnet18.layers()}
    assert kinds <= entries
    assert not {k.value for k in Kind} - kinds & entries
    assert {"skip (identity)", "shortcut"} <= entries
    assert "residual block" in render_graph(resnet18, collapse="blocks").source


def test_opaque_node_is_marked() -> None:
    with pytest.warns(fxmaps.FxmapsWarning, match="gate"):
        graph = fxmaps.analyze(toy.DataDependent())  # without an input the gate is opaque
    drawn = nodes(render_graph(graph))
    assert graph["gate"].opaque
    assert "opaque" in drawn["gate"]
    assert "dashed" in drawn["gate"]
    assert "opaque" not in drawn["conv"]
    assert "dashed" not in drawn["conv"]


def test_highlight_names_and_predicates(resnet18: ModelGraph) -> None:
    by_name = nodes(render_graph(resnet18, highlight=["fc", "layer1.0.conv1"]))
    assert "penwidth=3" in by_name["fc"]
    assert "penwidth=3" in by_name["layer1.0.conv1"]
    assert "penwidth=3" not in by_name["conv1"]
    marked = nodes(render_graph(resnet18, highlight=lambda layer: layer.kind is Kind.DOWNSAMPLE))
    assert {n for n, attrs in marked.items() if "penwidth=3" in attrs} == {
        layer.name for layer in resnet18.layers("downsample")
    }
    collapsed = nodes(render_graph(resnet18, collapse="blocks", highlight="layer2.1.conv2"))
    assert "penwidth=3" in collapsed["layer2.1"]


@pytest.fixture
def no_dot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH without Graphviz's dot, checked, so the test cannot pass with dot found."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("dot") is None


@pytest.mark.usefixtures("no_dot")
def test_missing_dot_explains_how_to_install(cifar: ModelGraph, tmp_path: Path) -> None:
    dot = render_graph(cifar)
    hint = r"not found on PATH.*apt-get install graphviz.*brew install graphviz.*conda install"
    calls = [
        lambda: dot.pipe(format="svg"),
        lambda: dot.render(tmp_path / "out", format="png"),
        dot._repr_mimebundle_,
        dot._repr_svg_,
        lambda: save_graph(dot, tmp_path / "model.svg"),
    ]
    for call in calls:
        with pytest.raises(fxmaps.GraphvizNotFoundError, match=hint) as info:
            call()
        assert isinstance(info.value, RuntimeError)
        assert "https://graphviz.org/download/" in str(info.value)
    assert save_graph(dot, tmp_path / "model.dot").read_text() == dot.source  # needs no dot


@requires_dot
def test_jupyter_shows_svg(cifar: ModelGraph) -> None:
    dot = render_graph(cifar)
    bundle = dot._repr_mimebundle_()
    assert list(bundle) == ["image/svg+xml"]
    assert "<svg" in bundle["image/svg+xml"]
    assert "<svg" in dot._repr_svg_()


@requires_dot
@pytest.mark.parametrize(
    ("suffix", "magic"),
    [(".svg", b"<?xml"), (".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF"), (".dot", b"digraph")],
)
def test_save_graph_formats(cifar: ModelGraph, tmp_path: Path, suffix: str, magic: bytes) -> None:
    dot = render_graph(cifar, collapse="blocks")
    path = save_graph(dot, str(tmp_path / f"model{suffix.upper()}"))
    assert path == tmp_path / f"model{suffix.upper()}"
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    if suffix == ".svg":
        assert "layer2.0" in path.read_text()


@requires_dot
def test_save_graph_warns_when_dot_shrinks_a_png(cifar: ModelGraph, tmp_path: Path) -> None:
    tall = fxmaps.analyze(torch.nn.Sequential(*[torch.nn.ReLU() for _ in range(600)]))
    hint = r"tall\.png: .*larger than the 32767 pixels .*shrank it to \d+×32767.*\.svg"
    with pytest.warns(fxmaps.FxmapsWarning, match=hint):
        path = save_graph(render_graph(tall), tmp_path / "tall.png")
    assert struct.unpack(">II", path.read_bytes()[16:24])[1] == 32767  # PNG height: shrunk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = save_graph(render_graph(cifar), tmp_path / "small.png")
    assert max(struct.unpack(">II", small.read_bytes()[16:24])) < 32767


def test_densely_wired_graphs_bound_dot_layout(resnet18: ModelGraph) -> None:
    dense = fxmaps.analyze(tv_model("densenet121"))
    assert dense.nx.number_of_edges() > 2 * len(dense)  # every dense layer concatenates all before
    assert "mclimit=0.1" in render_graph(dense).source
    assert "mclimit" not in render_graph(resnet18).source


# -- figures for a paper: repeats folded, shape computations left out, sizes, colours ------


@pytest.fixture(scope="module")
def small_vit() -> ModelGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32
        ).eval()
    return fxmaps.analyze(model, torch.rand(1, 3, 32, 32))


def test_collapse_repeats_folds_vits_encoder_layers_into_one_node(vit: ModelGraph) -> None:
    blocks = list(vit.blocks("residual"))
    dot = render_graph(vit, collapse="repeats")
    drawn = nodes(dot)
    first = blocks[0].name
    assert not {b.name for b in blocks[1:]} & set(drawn)
    assert f"<B>{first} … encoder_layer_11  ×12</B>" in drawn[first]
    one = re.search(r"(\d+) nodes", nodes(render_graph(vit, collapse="blocks"))[first])
    assert one is not None
    assert f"{one[1]} nodes each" in drawn[first]  # what one block holds
    parents = {tail for tail, head, _ in edges(dot) if head == first}
    children = {head for tail, head, _ in edges(dot) if tail == first}
    assert parents == {"encoder.dropout"}
    assert children == {"encoder.ln"}


def _stage_runs(model: torch.nn.Module) -> list[list[str]]:
    """Runs of consecutive blocks of a torchvision ResNet stage built alike (the oracle)."""
    runs: list[list[str]] = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        previous = None
        for index, block in enumerate(getattr(model, stage)):
            look = (block.downsample is None, block.conv1.in_channels, block.conv1.stride)
            if look == previous:
                runs[-1].append(f"{stage}.{index}")
            else:
                runs.append([f"{stage}.{index}"])
            previous = look
    return [run for run in runs if len(run) > 1]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_collapse_repeats_follows_the_module_tree_of_resnets(name: str) -> None:
    model = tv_model(name)
    graph = fxmaps.analyze(model, torch.zeros(1, 3, 64, 64))
    drawn = nodes(render_graph(graph, collapse="repeats"))
    runs = _stage_runs(model)
    assert runs
    for run in runs:
        tail = run[-1].rpartition(".")[2]
        assert f"<B>{run[0]} … {tail}  ×{len(run)}</B>" in drawn[run[0]]
        assert not set(run[1:]) & set(drawn)
    folded = {key for key, label in drawn.items() if "  ×" in label}
    assert folded == {run[0] for run in runs}


def test_shape_computations_are_left_out_of_collapsed_views(small_vit: ModelGraph) -> None:
    full = nodes(render_graph(small_vit))
    values = {  # the "other" nodes that hold no tensor: sizes and arithmetic on them
        name for name in full
        if small_vit[name].out_shape is None and small_vit[name].kind is Kind.OTHER
    }  # fmt: skip
    assert {"getattr", "floordiv", "mul"} <= values
    for collapse in ("blocks", "repeats", 1):
        dot = render_graph(small_vit, collapse=collapse)
        assert not values & set(nodes(dot))
        assert f"{len(values)} shape computations not drawn" in legend(dot)
        assert {"reshape", "permute", "getitem_5"} <= set(nodes(dot))  # tensors stay
    assert "shape computations" not in legend(render_graph(small_vit))
    kept = nodes(render_graph(small_vit, collapse="blocks", highlight=["floordiv"]))
    assert "floordiv" in kept


def _rgb(color: str) -> tuple[int, ...]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def test_legend_colours_are_distinct(resnet18: ModelGraph, small_vit: ModelGraph) -> None:
    for graph in (resnet18, small_vit):
        for collapse in ("none", "blocks"):
            swatches = re.findall(r'<TD BGCOLOR="(#[0-9a-f]{6})" BORDER="1" WIDTH', legend(
                render_graph(graph, collapse=collapse)))  # fmt: skip
            assert len(swatches) == len(set(swatches)), swatches
    fills = [_rgb(color) for color in KIND_COLORS.values()]
    for one, other in itertools.combinations(fills, 2):
        assert sum((a - b) ** 2 for a, b in zip(one, other, strict=True)) ** 0.5 > 25


@requires_dot
def test_save_graph_dpi_and_scale(cifar: ModelGraph, tmp_path: Path) -> None:
    dot = render_graph(cifar)

    def png_size(**options: float) -> tuple[int, int]:
        data = save_graph(dot, tmp_path / "graph.png", **options).read_bytes()
        width, height = struct.unpack(">II", data[16:24])
        return width, height

    base = png_size()
    for options in ({"dpi": 192}, {"scale": 2}, {"dpi": 48, "scale": 4}):
        width, height = png_size(**options)
        assert abs(width - 2 * base[0]) <= 2, options
        assert abs(height - 2 * base[1]) <= 2, options

    def svg_head(**options: float) -> tuple[float, float, str]:
        text = save_graph(dot, tmp_path / "graph.svg", **options).read_text()
        found = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"\s+viewBox="([^"]+)"', text)
        assert found is not None
        return float(found[1]), float(found[2]), found[3]

    plain, double = svg_head(), svg_head(scale=2)
    assert double == (2 * plain[0], 2 * plain[1], plain[2])
    with pytest.raises(OptionError, match=r"dpi= applies to \.png files, not \.svg"):
        save_graph(dot, tmp_path / "graph.svg", dpi=300)
    with pytest.raises(OptionError, match="scale=0 is not valid"):
        save_graph(dot, tmp_path / "graph.png", scale=0)
