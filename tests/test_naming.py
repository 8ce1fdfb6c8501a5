"""Node names: no node carries the path of a module it does not call; torchvision's names
that would stay as aliases."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import fxmaps
from tests.conftest import tv_model
from tests.oracles import hook_outputs

SAMPLE = ("vit_b_32", "swin_t", "resnet18", "efficientnet_b0", "inception_v3")
ZOO = [
    pytest.param(name, id=name, marks=() if name in SAMPLE else pytest.mark.zoo)
    for name in sorted(torchvision.models.list_models(module=torchvision.models))
]


def _meta_model(name: str) -> nn.Module:
    """The model on the meta device (no memory, no init) where its constructor allows it."""
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model: nn.Module = torchvision.models.get_model(name, weights=None)
    except NotImplementedError:  # an init that copies data (RegNet)
        model = tv_model(name)
    return model.eval()


@pytest.mark.parametrize("name", ZOO)
def test_a_name_that_is_a_module_path_is_that_modules_call(name: str) -> None:
    model = _meta_model(name)
    paths = {path for path, _ in model.named_modules()}
    g = fxmaps.analyze(model)
    named_after = [layer for layer in g.layers() if layer.name in paths]
    assert named_after, "no node is named by its module: the check would be empty"
    for layer in named_after:
        assert layer.module is not None, f"{layer.name} is not a module call"
        assert layer.target == layer.name, f"{layer.name} calls {layer.target}"
        assert layer.module is model.get_submodule(layer.name)


def test_vit_layer_norms_are_named_by_their_own_modules() -> None:
    model = tv_model("vit_b_32")
    x = torch.randn(1, 3, 224, 224)
    block = "encoder.layers.encoder_layer_0"
    seen = hook_outputs(model, x, names=[f"{block}.ln_1", f"{block}.ln_2"])
    with torch.no_grad():
        theirs = create_feature_extractor(model, [f"{block}.ln", f"{block}.ln_1"])(x)
    # torchvision's convention: its "ln_1" node is module ln_2's output
    assert torch.equal(theirs[f"{block}.ln_1"], seen[f"{block}.ln_2"][0])
    g = fxmaps.analyze(model, x)
    maps = fxmaps.extract(g, x, layers=[f"{block}.ln_1", f"{block}.ln_2", f"{block}.ln"])
    assert list(maps) == [f"{block}.ln_1", f"{block}.ln_2"]  # the alias is ln_1's node
    assert torch.equal(maps[f"{block}.ln_1"], seen[f"{block}.ln_1"][0])
    assert torch.equal(maps[f"{block}.ln_2"], seen[f"{block}.ln_2"][0])
    assert torch.equal(maps[f"{block}.ln_1"], theirs[f"{block}.ln"])
    assert g[f"{block}.ln_1"].alias == f"{block}.ln"
    assert g[f"{block}.ln"] is g[f"{block}.ln_1"]
    assert g.aliases[f"{block}.ln"] == f"{block}.ln_1"
    assert f"{block}.ln_1" not in g.aliases  # torchvision's name for ln_2 is ln_1's own


def test_every_alias_is_a_torchvision_name_for_the_same_output() -> None:
    model = tv_model("vit_b_32")
    x = torch.randn(1, 3, 224, 224)
    g = fxmaps.analyze(model, x)
    theirs = set(get_graph_node_names(model)[1])
    assert g.aliases
    assert set(g.aliases) <= theirs
    with torch.no_grad():
        expected = create_feature_extractor(model, list(g.aliases))(x)
    maps = fxmaps.extract(g, x, layers=list(g.aliases))
    for alias, name in g.aliases.items():
        assert torch.equal(maps[name], expected[alias]), alias


def test_a_second_call_skips_another_modules_path() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.conv_1 = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv_1(self.conv(self.conv(x)))

    model = Twice().eval()
    x = torch.randn(1, 3, 4, 4)
    seen = hook_outputs(model, x)
    g = fxmaps.analyze(model, x)
    assert [layer.target for layer in g.layers("conv")] == ["conv", "conv", "conv_1"]
    first, second, other = g.layers("conv")
    assert (first.name, other.name) == ("conv", "conv_1")
    assert second.name not in {"conv", "conv_1"}
    maps = fxmaps.extract(g, x, layers=[second.name, "conv_1"])
    assert torch.equal(maps[second.name], seen["conv"][1])
    assert torch.equal(maps["conv_1"], seen["conv_1"][0])
