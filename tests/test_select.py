"""Selections: renaming dicts (as create_feature_extractor's return_nodes) and maps that
hold float tensors only, unless an integer node is named."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

import fxmaps
from tests.conftest import tv_model


@pytest.fixture(scope="module")
def swin() -> tuple[torch.nn.Module, fxmaps.ModelGraph, torch.Tensor]:
    model = tv_model("swin_t")
    x = torch.randn(1, 3, 64, 64)
    return model, fxmaps.analyze(model, x), x


def test_star_and_kinds_leave_integer_buffers_out(
    swin: tuple[torch.nn.Module, fxmaps.ModelGraph, torch.Tensor],
) -> None:
    model, g, x = swin
    buffers = {name for name, b in model.named_buffers() if not b.is_floating_point()}
    assert buffers  # swin_t's relative_position_index
    integer = [layer.name for layer in g.layers("parameter") if layer.target in buffers]
    assert len(integer) == len(buffers)
    everything = fxmaps.extract(g, x, layers="*")
    assert all(t.is_floating_point() for t in everything.values())
    assert not set(integer) & set(everything)
    # every node left out holds something else than a float tensor when named
    named = fxmaps.extract(g, x, layers=[n for n in g.layers() if n.name not in everything])
    assert named
    assert not any(t.is_floating_point() for t in named.values())
    assert set(integer) <= set(named)
    params = fxmaps.extract(g, x, layers="parameter")
    assert not set(integer) & set(params)
    assert all(t.is_floating_point() for t in params.values())


def test_an_integer_node_named_explicitly_is_returned(
    swin: tuple[torch.nn.Module, fxmaps.ModelGraph, torch.Tensor],
) -> None:
    model, g, x = swin
    buffers = {name: b for name, b in model.named_buffers() if not b.is_floating_point()}
    layer = next(layer for layer in g.layers("parameter") if layer.target in buffers)
    maps = fxmaps.extract(g, x, layers=[layer.name])
    assert torch.equal(maps[layer.name], buffers[layer.target])
    assert layer in g.layers("parameter")  # the graph's own view keeps every node


def test_a_selection_of_integer_nodes_only_says_so(
    swin: tuple[torch.nn.Module, fxmaps.ModelGraph, torch.Tensor],
) -> None:
    _, g, x = swin
    with pytest.raises(fxmaps.OptionError, match=r"integer or boolean tensor .*name them"):
        fxmaps.extract(g, x, layers="*relative_position_index")


def test_a_renaming_dict_names_maps_as_create_feature_extractor() -> None:
    model = tv_model("resnet18")
    x = torch.randn(2, 3, 64, 64)
    renaming = {"layer1.0.conv1": "feat", "layer2": "stage2", "layer4.1.add": "last_add"}
    with torch.no_grad():
        expected = create_feature_extractor(model, return_nodes=renaming)(x)
    maps = fxmaps.extract(model, x, layers=renaming)
    assert list(maps) == list(expected) == ["feat", "stage2", "last_add"]
    for key, tensor in expected.items():
        assert torch.equal(maps[key], tensor), key
    assert maps.layer("feat").name == "layer1.0.conv1"
    assert torch.equal(maps.module("layer2"), expected["stage2"])
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model), renaming, reduce="mean")
    reduced = extractor(x)
    assert list(reduced) == ["feat", "stage2", "last_add"]
    assert torch.equal(reduced["feat"], expected["feat"].mean(1, keepdim=True))


def test_renaming_dict_errors() -> None:
    g = fxmaps.analyze(tv_model("resnet18"))
    x = torch.randn(1, 3, 32, 32)
    convs = len(g.layers("conv"))
    with pytest.raises(fxmaps.OptionError, match=rf"one node per key, and 'conv' selects {convs}"):
        fxmaps.extract(g, x, layers={"conv": "convs"})
    with pytest.raises(fxmaps.OptionError, match=r"same name: 'a'"):
        fxmaps.extract(g, x, layers={"conv1": "a", "layer1.0.conv1": "a"})
    with pytest.raises(fxmaps.OptionError, match=r"non-empty string, got int 3"):
        fxmaps.extract(g, x, layers={"conv1": 3})
