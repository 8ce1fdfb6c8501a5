"""ModelGraph: records, networkx view, counts and the summary table, against the fx graph."""

from __future__ import annotations

import re
from collections.abc import Callable

import networkx as nx
import pytest
import torch
from torch import nn

import fxmaps
from fxmaps.graph.model_graph import ATTR_KIND, ATTR_LAYER, ATTR_ROLE
from tests import models as toy
from tests.conftest import tv_model
from tests.oracles import count_modules


@pytest.fixture(scope="module")
def resnet18_graph() -> fxmaps.ModelGraph:
    return fxmaps.analyze(tv_model("resnet18"), torch.randn(1, 3, 64, 64))


def test_layers_are_in_execution_order(resnet18_graph: fxmaps.ModelGraph) -> None:
    fx_order = [resnet18_graph.fx_node(layer.name) for layer in resnet18_graph.layers()]
    assert fx_order == list(resnet18_graph.graph_module.graph.nodes)


def test_nx_mirrors_the_fx_graph(resnet18_graph: fxmaps.ModelGraph) -> None:
    graph = resnet18_graph.nx
    names = {resnet18_graph.fx_node(n.name): n.name for n in resnet18_graph.layers()}
    assert list(graph.nodes) == [layer.name for layer in resnet18_graph.layers()]
    expected = {(names[a], names[n]) for n in names for a in n.all_input_nodes}
    assert set(graph.edges) == expected
    assert nx.is_directed_acyclic_graph(graph)
    for layer in resnet18_graph.layers():
        assert graph.nodes[layer.name][ATTR_LAYER] is layer
        assert graph.nodes[layer.name][ATTR_KIND] is layer.kind


def test_skip_and_shortcut_edges(resnet18_graph: fxmaps.ModelGraph) -> None:
    roles = nx.get_edge_attributes(resnet18_graph.nx, ATTR_ROLE)
    assert roles[("maxpool", "layer1.0.add")] == "skip"
    assert roles[("layer1.1.relu_1", "layer2.0.downsample.0")] == "shortcut"
    assert roles[("layer2.0.downsample.1", "layer2.0.add")] == "shortcut"
    assert roles[("layer2.0.bn2", "layer2.0.add")] == "data"
    assert sum(role == "skip" for role in roles.values()) == 8 - 3


def test_counts_match_the_layers(resnet18_graph: fxmaps.ModelGraph) -> None:
    info = resnet18_graph.info()
    for kind in fxmaps.Kind:
        assert info.get(kind.value, 0) == len(resnet18_graph.layers(kind))
    assert info["nodes"] == len(resnet18_graph)
    assert info["residual"] == len(resnet18_graph.blocks("residual"))
    assert info["sequential"] == len(resnet18_graph.blocks(fxmaps.BlockKind.SEQUENTIAL))


def test_layers_filter_by_kinds(resnet18_graph: fxmaps.ModelGraph) -> None:
    both = resnet18_graph.layers(["conv", fxmaps.Kind.DOWNSAMPLE])
    assert {layer.kind for layer in both} == {fxmaps.Kind.CONV, fxmaps.Kind.DOWNSAMPLE}
    assert len(both) == 20
    with pytest.raises(
        fxmaps.NodeNotFoundError, match=r"'convs'.* not a kind either; kinds are: .*conv"
    ) as excinfo:
        resnet18_graph.layers("convs")
    assert excinfo.value.name == "convs"
    assert all(name in resnet18_graph for name in excinfo.value.candidates)
    assert resnet18_graph.layers("layer1.*.conv1") == resnet18_graph.layers(
        lambda layer: layer.name in ("layer1.0.conv1", "layer1.1.conv1")
    )
    assert resnet18_graph.layers("attention") == []  # a kind the model has no node of


def test_membership_by_name(resnet18_graph: fxmaps.ModelGraph) -> None:
    assert "layer1.0.conv1" in resnet18_graph
    assert "nope" not in resnet18_graph


@pytest.mark.parametrize("key", [None, 0, 1, 1.5, object(), ("layer1.0.conv1",), ["conv1"]])
def test_keys_that_are_not_names_are_not_nodes(
    resnet18_graph: fxmaps.ModelGraph, key: object
) -> None:
    assert key not in resnet18_graph
    assert all(key != layer.name for layer in resnet18_graph.layers())  # the oracle
    with pytest.raises(fxmaps.NodeNotFoundError, match="nodes are named by strings") as info:
        resnet18_graph.layer(key)  # type: ignore[arg-type]
    assert info.value.name is key
    assert info.value.candidates == ()


def test_layer_records(resnet18_graph: fxmaps.ModelGraph) -> None:
    conv = resnet18_graph["layer1.0.conv1"]
    module = resnet18_graph.model.get_submodule("layer1.0.conv1")
    assert conv.module is module
    assert (conv.target, conv.module_type, conv.block) == ("layer1.0.conv1", "Conv2d", "layer1.0")
    assert conv.out_shape == (1, 64, 16, 16)
    assert conv.params == sum(p.numel() for p in module.parameters())
    add = resnet18_graph["layer1.0.add"]
    assert (add.module, add.target, add.module_type) == (None, "add", "add")
    with pytest.raises(AttributeError, match="cannot assign"):
        conv.name = "x"  # type: ignore[misc]


def _table(text: str) -> list[dict[str, str]]:
    """Rows of a tabulate 'simple' table as dicts, columns sliced at the dash runs."""
    header, dashes, *rows = text.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    names = [header[a:b].strip() for a, b in spans]
    table = []
    for row in rows:
        if not row.strip() or set(row.strip()) == {"-"}:
            break
        table.append({n: row[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
    return table


def test_summary_rows_and_totals(resnet18_graph: fxmaps.ModelGraph) -> None:
    text = resnet18_graph.summary()
    rows = _table(text)[: len(resnet18_graph)]
    assert [row["name"] for row in rows] == [layer.name for layer in resnet18_graph.layers()]
    column = sum(int(row["params"].replace(",", "")) for row in rows if row["params"])
    total = sum(p.numel() for p in resnet18_graph.model.parameters())
    assert column == total == resnet18_graph.total_params
    assert f"Total params: {total:,} (the model has {total:,})" in text


def test_summary_filters_kinds(resnet18_graph: fxmaps.ModelGraph) -> None:
    rows = _table(resnet18_graph.summary(kinds="downsample"))
    assert [row["name"] for row in rows[:3]] == [
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
        "layer4.0.downsample.0",
    ]


def test_shared_parameters_count_once() -> None:
    graph = fxmaps.analyze(toy.SharedBlock(), torch.randn(1, 3, 8, 8))
    assert graph["block.conv1"].params == graph["block.conv1_1"].params == 4 * 4 * 9
    assert graph.total_params == sum(p.numel() for p in graph.model.parameters())
    rows = {row["name"]: row for row in _table(graph.summary())[: len(graph)]}
    assert rows["block.conv1"]["params"] == "144"
    assert rows["block.conv1_1"]["params"] == "shared"


def test_parameters_the_eval_graph_does_not_use_are_reported() -> None:
    model = tv_model("googlenet")
    graph = fxmaps.analyze(model)
    unused = sum(p.numel() for name, p in model.named_parameters() if name.startswith("aux"))
    assert sum(p.numel() for p in model.parameters()) - graph.total_params == unused
    assert f"{unused:,} parameters are not used by the traced eval-mode graph" in graph.summary()


def test_functional_layers_count_the_parameters_they_read() -> None:
    graph = fxmaps.analyze(toy.FunctionalNet())
    for name, params in toy.FUNCTIONAL_NET["params"].items():
        assert graph[name].params == params, name
    assert [layer.name for layer in graph.layers()] == toy.FUNCTIONAL_NET["names"]


def test_summary_golden(golden: Callable[[str, str], None]) -> None:
    torch.manual_seed(0)
    graph = fxmaps.analyze(toy.CifarResNet(), torch.randn(2, 3, 32, 32))
    golden("cifar_resnet_summary.txt", graph.summary() + "\n")


CENSUS = (
    "resnet18",
    "resnet50",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "vit_b_16",
    "convnext_tiny",
    "swin_t",
    "densenet121",
)
"""torchvision models whose ``info()`` is kept in ``tests/golden/census.txt``."""


def census_table(infos: dict[str, dict[str, int]]) -> str:
    """A row per count and a column per model; blank where a model's ``info()`` has no
    such count. Counts come in the order ``info()`` gives them, the totals last."""
    totals = ("opaque", "nodes")
    keys = [key for info in infos.values() for key in info if key not in totals]
    keys = [*dict.fromkeys(keys), *totals]
    rows = [["", *infos]]
    rows += [[key, *(str(info.get(key, "")) for info in infos.values())] for key in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows.insert(1, ["-" * width for width in widths])
    lines = []
    for row in rows:
        cells = zip(row, widths, strict=True)
        aligned = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)]
        lines.append("  ".join(aligned).rstrip())
    return "\n".join(lines) + "\n"


def test_census_golden(golden: Callable[[str, str], None]) -> None:
    infos = {}
    for name in CENSUS:
        model = tv_model(name)
        graph = fxmaps.analyze(model)  # no example input: no shapes, only the counts
        info = graph.info()
        # Every Conv2d module of these models is called once: conv and downsample nodes.
        assert info["conv"] + info["downsample"] == count_modules(model, nn.Conv2d), name
        assert info["nodes"] == len(graph.layers()), name
        infos[name] = info
    headline = ("conv", "downsample", "linear", "sequential", "residual")
    assert [infos["resnet50"][key] for key in headline] == [49, 4, 1, 4, 16]  # the seed's
    golden("census.txt", census_table(infos))


def test_repr_and_format_shape(resnet18_graph: fxmaps.ModelGraph) -> None:
    assert repr(resnet18_graph) == (
        "<ModelGraph of ResNet: 71 nodes, conv=17, downsample=3, linear=1, sequential=4, "
        "residual=8>"
    )
    assert fxmaps.format_shape((1, 64, 16, 16)) == "1×64×16×16"
    assert fxmaps.format_shape(((1, 2), (3,))) == "1×2, 3"
    assert fxmaps.format_shape(None) == ""
