"""Module paths as selections, against torchvision's extractors and forward hooks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.feature_extraction import create_feature_extractor

import fxmaps
from tests.conftest import tv_model
from tests.oracles import hook_outputs

SAMPLE = ("resnet18", "mobilenet_v3_small", "squeezenet1_0", "regnet_x_400mf")


def _tensor_calls(model: nn.Module, x: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    """Every call of every submodule whose output is one tensor, as the hooks saw it."""
    seen = hook_outputs(model, x)
    return {
        (path, call): out
        for path, outs in seen.items()
        for call, out in enumerate(outs)
        if isinstance(out, torch.Tensor)
    }


@pytest.mark.parametrize("name", SAMPLE)
def test_every_module_call_is_a_selection_equal_to_its_hook(name: str) -> None:
    model = tv_model(name)
    x = torch.randn(1, 3, 96, 96)
    expected = _tensor_calls(model, x)
    selection = [fxmaps.Module(path, call) for path, call in expected]
    maps = fxmaps.extract(fxmaps.analyze(model, x), x, layers=selection)
    for (path, call), out in expected.items():
        assert torch.equal(maps.module(path, call), out), (path, call)


def test_module_string_forms_select_as_module_does() -> None:
    g = fxmaps.analyze(tv_model("resnet18"), torch.randn(1, 3, 64, 64))
    for path in ("layer1", "layer2.0", "layer2.0.downsample", "fc"):
        want = g.layers(fxmaps.Module(path))
        assert g.layers(f"module:{path}") == want
        assert g.layers(f"module:{path}#0") == want
        if path not in g:  # a plain path falls back to the module's output
            assert g.layers(path) == want


def test_a_second_call_is_selected_by_its_index() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(self.block(x) * 2)

    model = Twice().eval()
    x = torch.randn(1, 3, 8, 8)
    seen = hook_outputs(model, x, names=["block"])
    maps = fxmaps.extract(model, x, layers=["module:block", "module:block#1"])
    assert torch.equal(maps.module("block"), seen["block"][0])
    assert torch.equal(maps.module("block", 1), seen["block"][1])
    g = fxmaps.analyze(model, x)
    assert g.module_calls("block") == 2
    with pytest.raises(fxmaps.NodeNotFoundError, match=r"called 2 times \(calls 0 to 1\)"):
        g.layers(fxmaps.Module("block", 2))


def test_an_unknown_module_lists_close_paths() -> None:
    g = fxmaps.analyze(tv_model("resnet18"))
    with pytest.raises(fxmaps.NodeNotFoundError, match=r"no module 'layer9'.*'layer4'"):
        g.layers("module:layer9")
    with pytest.raises(fxmaps.InputError, match=r"call after '#' must be a number"):
        g.layers("module:layer1#x")
    with pytest.raises(fxmaps.InputError, match=r"call index >= 0"):
        fxmaps.Module("layer1", -1)


def test_a_module_inside_an_opaque_one_says_so() -> None:
    model = tv_model("resnet18")
    g = fxmaps.analyze(model, leaf_modules=["layer1"])
    with pytest.raises(fxmaps.NodeNotFoundError, match=r"inside 'layer1', which the graph holds"):
        g.layers("module:layer1.0")
    x = torch.randn(1, 3, 64, 64)
    seen = hook_outputs(model, x, names=["layer1"])
    assert torch.equal(
        fxmaps.extract(g, x, layers="module:layer1").module("layer1"), seen["layer1"][0]
    )


def test_intermediate_layer_getter_equals_module_selection() -> None:
    model = tv_model("resnet18")
    x = torch.randn(2, 3, 64, 64)
    returned = {"layer1": "feat1", "layer2": "feat2", "layer3": "feat3", "layer4": "feat4"}
    with torch.no_grad():
        expected = IntermediateLayerGetter(model, return_layers=returned)(x)
    maps = fxmaps.extract(model, x, layers={fxmaps.Module(p): new for p, new in returned.items()})
    assert list(maps) == list(expected)
    for key, tensor in expected.items():
        assert torch.equal(maps[key], tensor), key
    plain = fxmaps.extract(model, x, layers=[fxmaps.Module(p) for p in returned])
    for path, new in returned.items():
        assert torch.equal(plain.module(path), expected[new])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_create_feature_extractor_module_paths_equal_ours(name: str) -> None:
    model = tv_model(name)
    x = torch.randn(1, 3, 96, 96)
    paths = [p for p, m in model.named_children()]
    with torch.no_grad():
        expected: dict[str, Any] = create_feature_extractor(model, return_nodes=paths)(x)
    seen = hook_outputs(model, x, names=paths)
    maps = fxmaps.extract(model, x, layers=paths)
    overwritten = set()
    for path in paths:
        assert torch.equal(maps.module(path), seen[path][0]), path
        if not torch.equal(expected[path], seen[path][0]):
            overwritten.add(path)  # torchvision returns the tensor a later in-place op changed
        else:
            assert torch.equal(maps.module(path), expected[path]), path
    assert not overwritten & {p for p, m in model.named_children() if list(m.children())}


def test_maps_module_names_what_is_there() -> None:
    maps = fxmaps.extract(tv_model("resnet18"), torch.randn(1, 3, 64, 64), layers="module:layer1")
    with pytest.raises(fxmaps.NodeNotFoundError, match=r"no map here is what module 'layer2'"):
        maps.module("layer2")


def test_a_module_path_looked_up_as_a_node_says_how_to_select_it() -> None:
    g = fxmaps.analyze(tv_model("resnet18"))
    (returned,) = g.layers(fxmaps.Module("layer1"))
    said = rf"'layer1' is a module: its call returns node '{returned.name}'"
    with pytest.raises(fxmaps.NodeNotFoundError, match=said):
        g["layer1"]
