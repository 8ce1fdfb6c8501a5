"""timm's ``features_only`` outputs as oracles for module-path selections.

timm names each feature by the module path whose output it is
(``feature_info.module_name()``: ``layer1``, ``stages.0``, ``blocks.2``). Selecting
those paths with :class:`fxmaps.Module` from the plain model must give, bit for
bit, what the ``features_only`` model returns with the same weights, and what
forward hooks on those modules see. A sample runs by default, every model under
the ``zoo`` marker.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxmaps
from tests.oracles import hook_outputs

timm = pytest.importorskip("timm", reason="timm is not installed")

SAMPLE = ("resnet10t", "convnext_atto", "tinynet_e")
ZOO = (
    "cs3darknet_focus_s",
    "cspresnet50",
    "darknet17",
    "densenet121",
    "dla34",
    "edgenext_xx_small",
    "efficientvit_b0",
    "fastvit_t8",
    "gernet_s",
    "ghostnet_050",
    "hgnetv2_b0",
    "lcnet_050",
    "mnasnet_small",
    "mobilenetv2_050",
    "mobilenetv3_small_050",
    "mobileone_s0",
    "mobilevit_xxs",
    "poolformer_s12",
    "regnetx_002",
    "regnety_002",
    "repvgg_a0",
    "res2net50_14w_8s",
    "resnest14d",
    "resnet18d",
    "rexnet_100",
    "seresnext26d_32x4d",
    "vgg11",
)


def _features_of(base: nn.Module, name: str) -> nn.Module:
    """timm's ``features_only`` model of ``name`` carrying ``base``'s weights (its modules are
    the same, some renamed ``stages.0`` -> ``stages_0``)."""
    features: nn.Module = timm.create_model(name, pretrained=False, features_only=True)
    theirs = base.state_dict()
    weights = {}
    for key, value in features.state_dict().items():
        names = (key, key.replace("_", ".", 1))
        source = next((k for k in names if k in theirs and theirs[k].shape == value.shape), None)
        assert source is not None, f"{name}: no weight of the plain model for {key}"
        weights[key] = theirs[source]
    features.load_state_dict(weights)
    return features.eval()


def _check(name: str) -> None:
    base = timm.create_model(name, pretrained=False).eval()
    features = _features_of(base, name)
    paths: list[str] = features.feature_info.module_name()  # type: ignore[union-attr, operator]
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = features(x)
    seen = hook_outputs(base, x, names=paths)
    maps = fxmaps.extract(base, x, layers=[fxmaps.Module(path) for path in paths])
    assert len(expected) == len(paths)
    for path, tensor in zip(paths, expected, strict=True):
        assert torch.equal(maps.module(path), tensor), path
        assert torch.equal(maps.module(path), seen[path][0]), path


@pytest.mark.parametrize("name", SAMPLE)
def test_features_only_equals_module_selection(name: str) -> None:
    _check(name)


@pytest.mark.zoo
@pytest.mark.parametrize("name", ZOO)
def test_features_only_equals_module_selection_zoo(name: str) -> None:
    _check(name)
