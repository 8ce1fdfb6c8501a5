"""analyze(): the caller's model is never changed; shapes equal what forward hooks see."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn

import fxmaps
from tests import models as toy
from tests.conftest import tv_model
from tests.oracles import assert_unchanged, hook_shapes, shape_of, snapshot


@pytest.mark.parametrize("train", [False, True])
def test_model_is_bit_for_bit_unchanged(train: bool) -> None:
    model = tv_model("resnet18")
    model.train()
    model.get_submodule("layer2").eval()  # a mixed-mode model must come back mixed
    model.get_submodule("layer1").register_forward_hook(lambda *args: None)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-1, 1)
    before = snapshot(model)
    graph = fxmaps.analyze(model, torch.randn(2, 3, 32, 32), train=train)
    assert_unchanged(model, before)
    assert graph.train is train


def test_shape_propagation_does_not_move_batchnorm_statistics() -> None:
    model = toy.CifarResNet().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    fxmaps.analyze(model, torch.randn(4, 3, 16, 16) + 3, train=True)
    after = dict(model.named_buffers())
    assert {"bn1.running_mean", "bn1.num_batches_tracked"} <= set(after)
    for name, buffer in before.items():
        assert torch.equal(after[name], buffer), name


@pytest.mark.parametrize(
    ("model", "inputs"),
    [
        (tv_model("resnet18"), (torch.randn(2, 3, 40, 48),)),
        (tv_model("efficientnet_b0"), (torch.randn(1, 3, 64, 64),)),
        (toy.TwoInputs(), (torch.randn(2, 3, 8, 8), torch.randn(2, 6))),
        (toy.Conv1dNet(), (torch.randn(2, 2, 64),)),
        (toy.UNet(), (torch.randn(1, 3, 32, 32),)),
        (toy.SharedBlock(), (torch.randn(1, 3, 8, 8),)),
    ],
    ids=["resnet18", "efficientnet_b0", "two_inputs", "conv1d", "unet", "shared"],
)
def test_shapes_equal_forward_hooks(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    model.eval()
    graph = fxmaps.analyze(model, inputs)
    seen = hook_shapes(model, *inputs)
    calls: dict[str, int] = defaultdict(int)
    for layer in graph.layers():
        if layer.module is not None:
            assert layer.out_shape == seen[layer.target][calls[layer.target]], layer.name
            calls[layer.target] += 1
    assert graph.layers()[-1].out_shape == shape_of(model(*inputs))
    assert graph.input_shapes == tuple(tuple(x.shape) for x in inputs)


def test_toy_shapes() -> None:
    for model, x, expected in (
        (toy.Conv1dNet(), torch.randn(2, 2, 64), toy.CONV1D_NET["shapes"]),
        (toy.UNet(), torch.randn(1, 3, 32, 32), toy.UNET["shapes"]),
    ):
        graph = fxmaps.analyze(model, x)
        assert {name: graph[name].out_shape for name in expected} == expected


def test_without_input_there_are_no_shapes() -> None:
    graph = fxmaps.analyze(toy.CifarResNet())
    assert all(layer.out_shape is None for layer in graph.layers())
    assert graph.input_shapes is None


def test_uninitialized_lazy_modules_are_not_materialized() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(fxmaps.InputError, match=r"uninitialized lazy modules \('2'\)") as excinfo:
        fxmaps.analyze(model, torch.randn(1, 3, 8, 8))
    assert excinfo.value.argument == "model"
    assert isinstance(model[2], nn.LazyLinear)
    assert [layer.name for layer in fxmaps.analyze(model).layers("linear")] == ["2"]


def test_errors_keep_their_builtin_bases() -> None:
    assert issubclass(fxmaps.ShapeError, ValueError)
    assert issubclass(fxmaps.TraceError, RuntimeError)
    assert issubclass(fxmaps.NodeNotFoundError, KeyError)
    assert issubclass(fxmaps.InputError, TypeError)
    assert issubclass(fxmaps.FxmapsWarning, UserWarning)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_analyze_on_cuda_keeps_the_model_there() -> None:
    model = toy.CifarResNet().cuda()
    graph = fxmaps.analyze(model, torch.randn(2, 3, 16, 16, device="cuda"))
    assert graph["linear"].out_shape == (2, 10)
    assert all(p.is_cuda for p in model.parameters())
