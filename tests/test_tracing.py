"""Tracing: torchvision's node names, tracing into torchvision.ops, auto-leaf, autowrap."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import get_graph_node_names

import fxmaps
from tests import models as toy
from tests.conftest import tv_model

_TV_OPS_CLASSES = tuple(
    cls
    for cls in vars(torchvision.ops).values()
    if isinstance(cls, type) and issubclass(cls, nn.Module)
)


def _eval_names(model: nn.Module) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return list(get_graph_node_names(model)[1])


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "densenet121", "alexnet"])
def test_names_equal_torchvision_where_it_hides_nothing(name: str) -> None:
    model = tv_model(name)
    ours = [layer.name for layer in fxmaps.analyze(model).layers()]
    assert ours[:-1] == _eval_names(model)  # fxmaps adds the output node at the end
    assert ours[-1] == "output"


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small", "vit_b_16"])
def test_traces_into_torchvision_ops_modules(name: str) -> None:
    model = tv_model(name)
    graph = fxmaps.analyze(model)
    ours = {layer.name for layer in graph.layers()}
    hidden_by_torchvision = set(_eval_names(model)) - ours
    # Every name torchvision has and fxmaps lacks is a torchvision.ops module we opened up.
    for missing in hidden_by_torchvision:
        module = model.get_submodule(missing)
        assert isinstance(module, _TV_OPS_CLASSES), missing
        assert any(name.startswith(missing + ".") for name in ours), missing
    conv_modules = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    linear_calls = sum(
        isinstance(m, nn.Linear)
        and not isinstance(m, nn.modules.linear.NonDynamicallyQuantizableLinear)
        for m in model.modules()
    )
    assert len(graph.layers(["conv", "downsample"])) == conv_modules
    assert len(graph.layers("linear")) == linear_calls


def test_efficientnet_and_vit_counts_from_the_issue() -> None:
    assert len(fxmaps.analyze(tv_model("efficientnet_b0")).layers("conv")) == 81
    assert len(fxmaps.analyze(tv_model("vit_b_16")).layers("linear")) == 25


@pytest.mark.parametrize(
    ("name", "size"),
    [("efficientnet_b0", 64), ("vit_b_16", 224), ("swin_t", 64), ("convnext_tiny", 64)],
)
def test_graph_module_computes_what_the_model_computes(name: str, size: int) -> None:
    model = tv_model(name)
    x = torch.randn(1, 3, size, size)
    graph = fxmaps.analyze(model)
    with torch.no_grad():
        torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)


def test_module_called_twice_gets_suffixed_names() -> None:
    graph = fxmaps.analyze(toy.SharedBlock())
    assert [layer.name for layer in graph.layers("conv")] == toy.SHARED_BLOCK["conv"]


def test_untraceable_submodule_becomes_opaque_with_a_warning() -> None:
    model = toy.DataDependent()
    with pytest.warns(fxmaps.FxmapsWarning, match=r"'gate' \(Gate: .*if x.sum\(\) > 0"):
        graph = fxmaps.analyze(model, torch.randn(1, 3, 8, 8))
    assert [o.name for o in graph.opaque] == ["gate"]
    assert graph["gate"].opaque
    assert graph["gate"].kind is fxmaps.Kind.OTHER
    assert "models.py:" in graph.opaque[0].location
    assert [layer.name for layer in graph.layers("conv")] == ["conv", "head"]
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)


def test_failing_instances_of_one_class_cost_two_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    model = toy.ManyGates()
    roots: list[str] = []
    original = fxmaps.tracing._Tracer.trace

    def counting(self: fxmaps.tracing._Tracer, root: nn.Module, **kwargs: object) -> object:
        roots.append(type(root).__name__)
        return original(self, root, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fxmaps.tracing._Tracer, "trace", counting)
    with pytest.warns(fxmaps.FxmapsWarning, match="12 module"):
        graph = fxmaps.analyze(model, torch.randn(1, 2, 4, 4))
    assert [o.name for o in graph.opaque] == [f"blocks.{i}" for i in range(13) if i != 5]
    assert [layer.name for layer in graph.layers("conv")] == ["blocks.5.conv"]
    assert roots.count("ManyGates") == 2  # one failure, one success; the twins are probed alone
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)


def test_failure_in_the_models_own_forward_names_the_line() -> None:
    with pytest.raises(fxmaps.TraceError, match=r"RootDataDependent.*if y.mean\(\) > 0") as info:
        fxmaps.analyze(toy.RootDataDependent())
    assert isinstance(info.value, RuntimeError)
    assert "leaf_modules" in str(info.value)
    assert "autowrap_functions" in str(info.value)


def test_shape_helpers_are_autowrapped_not_made_opaque() -> None:
    model = toy.SamePadNet()
    with warnings.catch_warnings():
        warnings.simplefilter("error", fxmaps.FxmapsWarning)
        graph = fxmaps.analyze(model, torch.randn(1, 3, 17, 17))
    assert graph.opaque == ()
    assert graph.autowrapped == ("tests.models.get_same_padding",)
    assert [layer.name for layer in graph.layers("conv")] == ["stem.conv", "block.conv"]
    for size in (17, 20):  # the padding is computed at run time, not frozen at trace time
        x = torch.randn(1, 3, size, size)
        torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)
    assert toy.pad_same.__globals__["get_same_padding"] is toy.get_same_padding


def test_optional_arguments_are_fixed_at_their_defaults() -> None:
    graph = fxmaps.analyze(toy.OptionalMask(), torch.randn(1, 3, 8, 8))
    assert [layer.name for layer in graph.layers()] == ["x", "conv", "output"]
    assert graph.graph_module.graph.find_nodes(op="call_function", target=torch.mul) == []


def test_asserts_are_recorded_instead_of_making_modules_opaque() -> None:
    parent = nn.Sequential(toy.ShapeChecks())
    graph = fxmaps.analyze(parent, torch.randn(1, 3, 8, 8))
    assert graph.opaque == ()
    assert [layer.name for layer in graph.layers("conv")] == ["0.conv"]
    asserts = [layer for layer in graph.layers() if layer.target == "_assert"]
    assert len(asserts) == 2


def test_submodule_named_like_a_graph_module_attribute() -> None:
    model = toy.TwoInputs()  # has a submodule called `meta`
    graph = fxmaps.analyze(model, (torch.randn(2, 3, 8, 8), torch.randn(2, 6)))
    assert graph["meta"].target == "meta"
    assert graph["meta"].module is model.meta
    assert not hasattr(model, "fxmaps_meta")


@pytest.mark.parametrize(
    "spec", [toy.Gate, "gate", "instance"], ids=["class", "qualname", "instance"]
)
def test_leaf_modules_by_class_name_or_instance(spec: object) -> None:
    model = toy.DataDependent()
    leaf = model.gate if spec == "instance" else spec
    with warnings.catch_warnings():
        warnings.simplefilter("error", fxmaps.FxmapsWarning)
        graph = fxmaps.analyze(model, leaf_modules=[leaf])  # type: ignore[list-item]
    assert graph["gate"].opaque
    assert [(o.name, o.reason) for o in graph.opaque] == [("gate", "listed in leaf_modules")]


def test_leaf_modules_on_a_traceable_module_keeps_it_whole() -> None:
    graph = fxmaps.analyze(toy.CifarResNet(), leaf_modules=["layer2.0"])
    assert graph["layer2.0"].opaque
    assert not any(layer.name.startswith("layer2.0.") for layer in graph.layers())


def test_bad_leaf_module_spec() -> None:
    with pytest.raises(fxmaps.InputError, match=r"leaf_modules entry 'nope' is not"):
        fxmaps.analyze(toy.CifarResNet(), leaf_modules=["nope"])


def test_train_graph_differs_where_the_model_does() -> None:
    model = tv_model("googlenet")
    eval_names = {layer.name for layer in fxmaps.analyze(model).layers()}
    train_graph = fxmaps.analyze(model, train=True)
    aux = {layer.name for layer in train_graph.layers() if layer.name.startswith("aux1.")}
    assert aux
    assert not aux & eval_names
    assert not model.training  # tv_model returned it in eval mode; analyze restored that


def test_tracing_wrong_number_of_inputs() -> None:
    with pytest.raises(fxmaps.InputError, match=r"forward takes 1 positional inputs \(x\)"):
        fxmaps.analyze(toy.CifarResNet(), (torch.randn(1, 3, 8, 8), torch.randn(1)))
    with pytest.raises(fxmaps.InputError, match=r"needs the argument 'extra'"):
        fxmaps.analyze(toy.TwoInputs(), torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("name", "autowrapped"),
    [
        ("hiera_tiny_224", ()),  # forward(x, mask=None): `if mask is not None` must be False
        ("tf_efficientnet_b0", ("timm.layers.padding.get_same_padding",)),
    ],
)
def test_timm_models_that_need_concrete_args_or_autowrap(
    name: str, autowrapped: tuple[str, ...]
) -> None:
    timm = pytest.importorskip("timm", reason="timm is an optional extra")
    model = timm.create_model(name, pretrained=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", fxmaps.FxmapsWarning)
        graph = fxmaps.analyze(model)
    assert graph.opaque == ()
    assert graph.autowrapped == autowrapped
    assert [layer.name for layer in graph.layers("input")] == ["x"]
    x = torch.randn(1, *model.pretrained_cfg["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)
