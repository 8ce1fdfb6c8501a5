"""Score-CAM's masked runs: batch norms folded into convolutions on a copy of the graph
(the same outputs, the model untouched, nothing folded that could tell), and Score-CAM
through the folded graph against pytorch-grad-cam on a model whose channel scores
differ, so that the channel weights matter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import fx, nn
from torch.nn import functional as F

import fxmaps
from fxmaps.attribute.fold import folded
from tests.conftest import tv_model
from tests.oracles import assert_unchanged, correlation, grad_cam_maps, hook_outputs, snapshot


def _with_statistics(model: nn.Module) -> nn.Module:
    """Every batch norm with running statistics and an affine map far from identity."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None
            assert module.running_var is not None
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -1, 1)
    return model.eval()


def _calls(module: fx.GraphModule, kind: type[nn.Module]) -> int:
    return sum(
        n.op == "call_module" and isinstance(module.get_submodule(str(n.target)), kind)
        for n in module.graph.nodes
    )


def test_folding_keeps_the_outputs_and_leaves_the_model_alone() -> None:
    model = _with_statistics(tv_model("resnet18"))
    x = torch.randn(2, 3, 64, 64)
    graph = fxmaps.analyze(model, x)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    before, nodes = snapshot(model), len(graph.graph_module.graph.nodes)
    run = folded(graph.graph_module)
    assert _calls(graph.graph_module, nn.BatchNorm2d) == norms  # each follows a conv
    assert _calls(run, nn.BatchNorm2d) == 0
    assert _calls(run, nn.Conv2d) == _calls(graph.graph_module, nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(run(x), model(x), rtol=1e-4, atol=1e-4)
    assert_unchanged(model, before)
    assert len(graph.graph_module.graph.nodes) == nodes


class _Reused(nn.Module):
    """The convolution's output goes to the norm and to the sum: it cannot absorb it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def _conv_bn() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    _with_statistics(model)
    return model


def _training_norm() -> nn.Sequential:
    model = _conv_bn()
    model[1].train()
    return model


def _hooked_norm() -> nn.Sequential:
    model = _conv_bn()
    model[1].register_forward_hook(lambda *_: None)
    return model


@pytest.mark.parametrize(
    "build",
    [_training_norm, _hooked_norm, lambda: _with_statistics(_Reused())],
    ids=["norm-in-training", "hooked-norm", "conv-output-reused"],
)
def test_nothing_is_folded_that_could_tell(build: Callable[[], nn.Module]) -> None:
    module = fx.symbolic_trace(build())
    assert folded(module) is module


def _scored_cnn() -> nn.Module:
    """A small conv net with batch norms whose class scores spread widely, so Score-CAM's
    softmax over channel scores is far from uniform."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for inputs, outputs, stride in ((3, 16, 1), (16, 32, 2), (32, 32, 1)):
        layers += [nn.Conv2d(inputs, outputs, 3, stride, 1), nn.BatchNorm2d(outputs), nn.ReLU()]
    head = nn.Linear(32, 10)
    with torch.no_grad():
        head.weight.mul_(4000)
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return _with_statistics(model)


def test_scorecam_matches_pytorch_grad_cam_where_the_weights_matter() -> None:
    model = _scored_cnn()
    x = torch.randn(2, 3, 24, 24)
    result = fxmaps.cam(model, x, method="scorecam", layer="8")
    expected = grad_cam_maps(model, "8", x, list(result.targets), "scorecam")  # type: ignore[arg-type]
    activations = hook_outputs(model, x, names=["8"])["8"][0]
    uniform = F.interpolate(activations.mean(1, keepdim=True), size=(24, 24), mode="bilinear")
    for i in range(2):
        assert correlation(result.maps[i], expected[i]) > 0.99
        assert correlation(uniform[i], expected[i]) < 0.9  # equal weights would not do
