"""analyze(): the caller's model is never changed; shapes equal what forward hooks see."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch import nn

import fxmaps
from fxmaps.trace.shapes import shape_of
from tests import models as toy
from tests.conftest import tv_model
from tests.oracles import hook_outputs


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "modes": [m.training for m in model.modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "attrs": [sorted(vars(m)) for m in model.modules()],
        "grads": [p.grad for p in model.parameters()],
    }


def _assert_unchanged(model: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(model)
    state_before = before["state"]
    assert isinstance(state_before, dict)
    for key, value in after["state"].items():  # type: ignore[attr-defined]
        assert torch.equal(value, state_before[key]), key
    for key in ("modes", "hooks", "attrs", "grads"):
        assert after[key] == before[key], key


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
    before = _snapshot(model)
    graph = fxmaps.analyze(model, torch.randn(2, 3, 32, 32), train=train)
    _assert_unchanged(model, before)
    assert graph.train is train


def test_shape_propagation_does_not_move_batchnorm_statistics() -> None:
    model = toy.CifarResNet().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    fxmaps.analyze(model, torch.randn(4, 3, 16, 16) + 3, train=True)
    after = dict(model.named_buffers())
    assert {"bn1.running_mean", "bn1.num_batches_tracked"} <= set(after)
    for name, buffer in before.items():
        assert torch.equal(after[name], buffer), name


def _hook_shapes(model: nn.Module, *inputs: torch.Tensor) -> dict[str, list[object]]:
    """Output shapes per module call, as forward hooks see them."""
    return {
        name: [shape_of(out) for out in outs] for name, outs in hook_outputs(model, *inputs).items()
    }


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
    seen = _hook_shapes(model, *inputs)
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


def test_wrong_channels_name_the_node_and_both_shapes() -> None:
    with pytest.raises(
        fxmaps.ShapeError,
        match=r"node 'conv1' \(Conv2d\) failed on input of shape \(1, 1, 64, 64\); "
        r"it expects 3 input channels, shape \(N, 3, H, W\)",
    ):
        fxmaps.analyze(tv_model("resnet18"), torch.randn(1, 1, 64, 64))


def test_too_small_input_names_where_it_collapses() -> None:
    with pytest.raises(
        fxmaps.ShapeError, match=r"node 'features.20' \(MaxPool2d\).*\(1, 512, 1, 1\)"
    ):
        fxmaps.analyze(tv_model("vgg11"), torch.randn(1, 3, 16, 16))


def test_wrong_features_for_a_linear() -> None:
    with pytest.raises(fxmaps.ShapeError, match=r"'meta' \(Linear\).*expects 6 input features"):
        fxmaps.analyze(toy.TwoInputs(), (torch.randn(1, 3, 8, 8), torch.randn(1, 5)))


def test_not_a_module() -> None:
    with pytest.raises(fxmaps.InputError, match=r"needs a torch.nn.Module, got a lambda function"):
        fxmaps.analyze(lambda x: x)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [[1, 2], (), "image", [torch.zeros(1), 3]])
def test_example_input_must_be_tensors(bad: object) -> None:
    with pytest.raises(fxmaps.InputError, match=r"example_input must be a tensor or a non-empty"):
        fxmaps.analyze(toy.CifarResNet(), bad)  # type: ignore[arg-type]


def test_input_on_another_device() -> None:
    with pytest.raises(fxmaps.DeviceError, match=r"example input 0 is on meta but the model's"):
        fxmaps.analyze(toy.CifarResNet(), torch.randn(1, 3, 8, 8, device="meta"))


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
