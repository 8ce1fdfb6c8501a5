"""``fxmaps.cam`` against pytorch-grad-cam on the same layer, and the layer it chooses
against the module tree.

The oracle is told the layer as a module and given the ``reshape_transform`` each
transformer needs (written here, in the test); fxmaps is given neither. Random
weights can make a map all zero for the top class (every channel weighted
negatively): for such a sample the test explains the highest-scoring class whose
map is not all zero, so that the comparison compares something. torchvision's ViT
starts with a zero classifier (every map blank for every class); the test gives it
random weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import fxmaps
from fxmaps.attribute.methods import eigen
from tests.oracles import (
    correlation,
    grad_cam_maps,
    grid_last_to_first,
    hook_outputs,
    tokens_to_grid,
)

pytest.importorskip("pytorch_grad_cam", reason="the oracle is pytorch-grad-cam (grad-cam)")


@dataclass(frozen=True)
class Case:
    """A model, its input side, the module whose output the default layer must be, an
    explicit layer (as a module call) and the reshape the oracle needs."""

    build: Callable[[], nn.Module]
    side: int
    default: str
    explicit: str
    reshape: Any = None


def _tv(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torchvision.models.get_model(name, weights=None, **kwargs).eval()

    return build


def _vit_b_16() -> nn.Module:
    """torchvision's vit_b_16 at 64x64, its classifier given random weights: torchvision
    initialises it to zeros, so every logit is 0, every gradient too, and every map blank."""
    model = _tv("vit_b_16", image_size=64)()
    head = model.get_submodule("heads.head")
    assert isinstance(head, nn.Linear)
    nn.init.normal_(head.weight, std=0.02)
    return model


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        timm = pytest.importorskip("timm", reason="timm models")
        model: nn.Module = timm.create_model(name, pretrained=False, img_size=64)
        return model.eval()

    return build


CASES = {
    "resnet18": Case(_tv("resnet18"), 96, "layer4", "layer3"),
    "resnet50": Case(_tv("resnet50"), 112, "layer4", "layer3"),
    "vgg16": Case(_tv("vgg16"), 112, "features", "features.23"),
    "efficientnet_b0": Case(_tv("efficientnet_b0"), 112, "features", "features.6"),
    "convnext_tiny": Case(_tv("convnext_tiny"), 128, "features", "features.5"),
    "vit_b_16": Case(
        _vit_b_16,
        64,
        "encoder.layers.encoder_layer_10",
        "encoder.layers.encoder_layer_9",
        tokens_to_grid(1),
    ),
    "swin_t": Case(_tv("swin_t"), 128, "features.7", "features.5", grid_last_to_first),
    "vit_tiny_patch16_224": Case(
        _timm("vit_tiny_patch16_224"), 64, "blocks.10", "blocks.9", tokens_to_grid(1)
    ),
    "deit_tiny_patch16_224": Case(
        _timm("deit_tiny_patch16_224"), 64, "blocks.10", "blocks.9", tokens_to_grid(1)
    ),
}
METHODS = ["gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "scorecam"]
SAMPLE = {("resnet18", m) for m in METHODS} | {
    ("vit_tiny_patch16_224", "gradcam"),
    ("vit_tiny_patch16_224", "scorecam"),
    ("vit_tiny_patch16_224", "eigencam"),
}
PARAMS = [
    pytest.param(name, method, marks=() if (name, method) in SAMPLE else pytest.mark.zoo)
    for name in CASES
    for method in METHODS
]

EXPLICIT_SAMPLE = {
    ("resnet18", "gradcam"),
    ("resnet18", "scorecam"),
    ("vit_tiny_patch16_224", "gradcam"),
}
EXPLICIT_PARAMS = [
    pytest.param(name, method, marks=() if (name, method) in EXPLICIT_SAMPLE else pytest.mark.zoo)
    for name in CASES
    for method in METHODS
]


def _setup(name: str) -> tuple[Case, nn.Module, fxmaps.ModelGraph, torch.Tensor]:
    case = CASES[name]
    torch.manual_seed(0)
    model = case.build()
    x = torch.randn(2, 3, case.side, case.side)
    return case, model, fxmaps.analyze(model, x), x


def _meaningful(
    graph: fxmaps.ModelGraph, x: torch.Tensor, method: str, layer: str | None
) -> fxmaps.CamResult:
    """The top class's maps, except where a sample's map is all zero: there the
    highest-scoring class (of the top 20) whose map is not."""
    result = fxmaps.cam(graph, x, method=method, layer=layer)
    if bool((result.raw.flatten(1).amax(dim=1) > 0).all()):
        return result
    with torch.no_grad():
        ranked = graph.model(x).argsort(dim=1, descending=True)[:, :20]
    targets = [int(t) if t is not None else 0 for t in result.targets]
    for i in range(len(x)):
        for candidate in ranked[i].tolist():
            one = fxmaps.cam(graph, x[i : i + 1], candidate, method=method, layer=layer)
            if float(one.raw.max()) > 0:
                targets[i] = candidate
                break
    return fxmaps.cam(graph, x, targets, method=method, layer=layer)


def _eigen_oracle(model: nn.Module, module: str, x: torch.Tensor, reshape: Any) -> torch.Tensor:
    """pytorch-grad-cam's Eigen-CAM projection on the hooked module's output, with the
    sign fxmaps documents (positive correlation with the channel sum), upsampled and
    scaled as pytorch-grad-cam scales its maps."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    value = hook_outputs(model, x, names=[module])[module][0]
    grid = reshape(value) if reshape is not None else value
    projection = torch.as_tensor(get_2d_projection(grid.numpy()))
    total = grid.sum(dim=1)
    for i in range(len(projection)):
        if correlation(projection[i], total[i]) < 0:
            projection[i] = -projection[i]
    up = F.interpolate(projection.clamp(min=0)[:, None], size=x.shape[-2:], mode="bilinear")
    low = up.flatten(1).amin(1)[:, None, None, None]
    high = up.flatten(1).amax(1)[:, None, None, None]
    return ((up - low) / (high - low + 1e-7))[:, 0]


def _check(name: str, method: str, explicit: bool) -> None:
    case, model, graph, x = _setup(name)
    if method == "scorecam":
        x = x[:1]  # a masked run per channel: one sample is enough, and twice as fast
    module = case.explicit if explicit else case.default
    layer = f"module:{module}" if explicit else None
    result = _meaningful(graph, x, method, layer)
    if method == "eigencam":
        expected: Any = _eigen_oracle(model, module, x, case.reshape)
    else:
        classes = [int(t) for t in result.targets if t is not None]
        expected = grad_cam_maps(model, module, x, classes, method, case.reshape)
    floor = 0.95 if method == "scorecam" else 0.99
    for i in range(len(x)):
        assert correlation(result.maps[i], expected[i]) > floor, (name, method, i, result)


@pytest.mark.parametrize(("name", "method"), PARAMS)
def test_default_layer_matches_pytorch_grad_cam(name: str, method: str) -> None:
    _check(name, method, explicit=False)


@pytest.mark.parametrize(("name", "method"), EXPLICIT_PARAMS)
def test_explicit_layer_matches_pytorch_grad_cam(name: str, method: str) -> None:
    _check(name, method, explicit=True)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in ("resnet18", "vit_tiny_patch16_224") else pytest.mark.zoo)
     for n in CASES],
)  # fmt: skip
def test_default_layer_is_what_the_last_stage_returns(name: str) -> None:
    case, model, graph, x = _setup(name)
    chosen = fxmaps.cam(graph, x, method="eigencam").layer
    ours = fxmaps.extract(graph, x, layers=[chosen])[chosen]
    hooked = hook_outputs(model, x, names=[case.default])[case.default][0]
    assert torch.equal(ours, hooked)


def test_eigencam_projection_matches_svd_up_to_sign() -> None:
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    torch.manual_seed(0)
    activations = torch.randn(3, 16, 5, 6).relu()
    ours = eigen(activations)
    theirs = torch.as_tensor(get_2d_projection(activations.numpy()))
    for i in range(3):
        assert abs(correlation(ours[i], theirs[i])) > 0.9999
        assert correlation(ours[i], activations[i].sum(dim=0)) > 0
