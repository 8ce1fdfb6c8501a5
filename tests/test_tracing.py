"""Tracing: torchvision's node names, tracing into torchvision.ops, auto-leaf, autowrap."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import get_graph_node_names

import fxmaps
from fxmaps.trace.symbolic import SymbolicTracer
from tests import models as toy
from tests.conftest import tv_model
from tests.oracles import count_modules, hook_outputs

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
    ours = {layer.name for layer in graph.layers()} | set(graph.aliases)  # names it accepts
    hidden_by_torchvision = set(_eval_names(model)) - ours
    # Every name torchvision has and fxmaps lacks is a torchvision.ops module we opened up.
    for missing in hidden_by_torchvision:
        module = model.get_submodule(missing)
        assert isinstance(module, _TV_OPS_CLASSES), missing
        assert any(name.startswith(missing + ".") for name in ours), missing
    conv_modules = count_modules(model, nn.Conv2d)
    linear_calls = count_modules(
        model, nn.Linear, exclude=nn.modules.linear.NonDynamicallyQuantizableLinear
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


def _assert_captured(
    model: nn.Module, x: torch.Tensor, eager: list[str], *, train: bool = False
) -> fxmaps.ModelGraph:
    """With an example input, ``eager`` are the calls that ran as Python, nothing is opaque,
    and every module call is a node whose map is what a forward hook sees."""
    graph = fxmaps.analyze(model, x, train=train)
    assert [region.name for region in graph.eager] == eager
    assert graph.opaque == ()
    calls: dict[str, int] = {}
    named: dict[str, tuple[str, int]] = {}
    for layer in graph.layers():
        if layer.module is not None:
            named[layer.name] = (layer.target, calls.get(layer.target, 0))
            calls[layer.target] = calls.get(layer.target, 0) + 1
    maps = fxmaps.extract(graph, x, layers=list(named))
    hooked = hook_outputs(model.train(train), x)
    for name, (target, call) in named.items():
        torch.testing.assert_close(maps[name], hooked[target][call], rtol=0, atol=0)
    assert "Eager (ran as Python)" in graph.summary()
    return graph


def test_untraceable_submodule_becomes_opaque_with_a_warning() -> None:
    model = toy.DataDependent()
    with pytest.warns(fxmaps.FxmapsWarning, match=r"'gate' \(Gate: .*if x.sum\(\) > 0"):
        graph = fxmaps.analyze(model)  # nothing to run it with: the gate is one node
    assert [o.name for o in graph.opaque] == ["gate"]
    assert graph["gate"].opaque
    assert graph["gate"].kind is fxmaps.Kind.OTHER
    assert "models.py:" in graph.opaque[0].location
    assert [layer.name for layer in graph.layers("conv")] == ["conv", "head"]
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)
    # With an input the gate runs as Python; the op its branch took is a node too.
    captured = _assert_captured(model, x, ["gate"])
    (region,) = captured.eager
    assert "if x.sum() > 0" in region.location
    assert {layer.region for layer in captured.layers() if layer.name.startswith("gate.")} == {
        "gate"
    }


def test_failing_instances_of_one_class_cost_two_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    model = toy.ManyGates()
    roots = _roots_traced(monkeypatch)
    with pytest.warns(fxmaps.FxmapsWarning, match="12 module"):
        graph = fxmaps.analyze(model)
    assert [o.name for o in graph.opaque] == [f"blocks.{i}" for i in range(13) if i != 5]
    assert [layer.name for layer in graph.layers("conv")] == ["blocks.5.conv"]
    assert roots.count("ManyGates") == 2  # one failure, one success; the twins are probed alone
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)
    _assert_captured(model, x, [f"blocks.{i}" for i in range(13) if i != 5])


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


# -- hardening: one pattern each, on toy models, against the model's own output ---------------


def _quiet_analyze(model: nn.Module, x: torch.Tensor, *, train: bool = False) -> fxmaps.ModelGraph:
    """Analyse, failing the test on any FxmapsWarning (nothing was made opaque)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", fxmaps.FxmapsWarning)
        return fxmaps.analyze(model, x, train=train)


def _assert_same_output(graph: fxmaps.ModelGraph, model: nn.Module, x: torch.Tensor) -> None:
    """The traced graph and the model, each on its own copy of ``x``, agree bit for bit,
    and leave their copies equal (an input updated in place is updated by both)."""
    ours, theirs = x.clone(), x.clone()
    with torch.no_grad():
        torch.testing.assert_close(graph.graph_module(ours), model(theirs), rtol=0, atol=0)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


# pytest rewrites the asserts of test modules into branches of its own; the toy's assert
# must stay a plain one, so the function holding it is compiled from source.
_PLAIN_ASSERT = """
def assert_square_rgb(h, w, c):
    assert h == w and c == 3, "square RGB images only"
"""
_compiled: dict[str, Any] = {}
exec(compile(_PLAIN_ASSERT, "<plain assert>", "exec"), _compiled)
_assert_square_rgb = _compiled["assert_square_rgb"]


class _Checked(nn.Module):
    """A 1x1 conv behind one kind of input check."""

    def __init__(self, check: str) -> None:
        super().__init__()
        self.check = check
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        if self.check == "assert-and":
            _assert_square_rgb(h, w, c)
        elif self.check == "raise-if":
            if c != 3:
                raise ValueError(f"expected 3 channels, got {c}")
        elif self.check == "raise-if-not":
            if not h == w:
                raise ValueError("expected a square image")
        else:
            torch._assert(h == w, "torch._assert: expected a square image")
        return self.conv(x)


@pytest.mark.parametrize("check", ["assert-and", "raise-if", "raise-if-not", "torch._assert"])
def test_checks_that_raise_are_recorded_not_made_opaque(check: str) -> None:
    model = nn.Sequential(_Checked(check), nn.ReLU()).eval()
    x = torch.randn(1, 3, 6, 6)
    graph = _quiet_analyze(model, x)
    assert graph.opaque == ()
    assert [layer.name for layer in graph.layers("conv")] == ["0.conv"]
    _assert_same_output(graph, model, x)
    # The check is part of the graph: a bad input fails it, naming the source line.
    bad = torch.randn(1, 3, 6, 7) if check != "raise-if" else torch.randn(1, 5, 6, 6)
    refusal = ValueError if check in ("raise-if", "raise-if-not") else AssertionError
    with pytest.raises(refusal, match=r"square|expected 3 channels"):
        model(bad)  # the model itself refuses it
    with pytest.raises(AssertionError, match=_CHECK_MESSAGES[check]):
        graph.graph_module(bad)


_CHECK_MESSAGES = {
    "assert-and": r"check traced by fxmaps failed: <plain assert>:3 in assert_square_rgb",
    "raise-if": r"check traced by fxmaps failed: .*test_tracing.py:\d+ in forward: if c != 3:",
    "raise-if-not": r"check traced by fxmaps failed: .*test_tracing.py:\d+ in forward: if not h",
    "torch._assert": r"^torch._assert: expected a square image$",
}


def _half_width(x: torch.Tensor) -> int:
    return int(x.shape[-1]) // 2


def _inverse_sqrt_width(x: torch.Tensor) -> float:
    return float(x.shape[-1]) ** -0.5


def _batch_size(x: torch.Tensor) -> int:
    return len(x)


_BUILTINS = {"int": _half_width, "float": _inverse_sqrt_width, "len": _batch_size}


class _Builtin(nn.Module):
    """A conv whose output is cropped, scaled or reshaped with a Python builtin on a shape."""

    def __init__(self, builtin: str, *, in_helper: bool) -> None:
        super().__init__()
        self.builtin = builtin
        self.in_helper = in_helper
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.in_helper:  # each helper called by its global name, as helpers are
            value = self._helper(x)
        elif self.builtin == "int":
            value = int(x.shape[-1]) // 2
        elif self.builtin == "float":
            value = float(x.shape[-1]) ** -0.5
        else:
            value = len(x)
        if self.builtin == "int":
            return y[..., :value]
        if self.builtin == "float":
            return y * value
        return y.reshape(value, -1)

    def _helper(self, x: torch.Tensor) -> float:
        if self.builtin == "int":
            return _half_width(x)
        if self.builtin == "float":
            return _inverse_sqrt_width(x)
        return _batch_size(x)


@pytest.mark.parametrize("builtin", ["int", "float", "len"])
def test_builtins_on_proxies_make_only_their_module_opaque(builtin: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Builtin(builtin, in_helper=False), nn.ReLU())
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(fxmaps.FxmapsWarning, match=rf"'1' \(_Builtin: .*{builtin}\("):
        graph = fxmaps.analyze(model)
    assert [o.name for o in graph.opaque] == ["1"]
    assert [layer.name for layer in graph.layers() if layer.opaque] == ["1"]
    assert [layer.name for layer in graph.layers("conv")] == ["0"]  # 1.conv is inside
    _assert_same_output(graph, model, x)
    # The opaque module's output is one node, extracted exactly as a hook sees it.
    maps = fxmaps.extract(graph, x, layers=["1", "2"])
    hooked = hook_outputs(model, x)
    torch.testing.assert_close(maps["1"], hooked["1"][0], rtol=0, atol=0)
    torch.testing.assert_close(maps["2"], hooked["2"][0], rtol=0, atol=0)
    # It is reported: in the summary and as a marked box in the diagram.
    row = next(line for line in graph.summary().splitlines() if line.startswith("1 "))
    assert "(opaque)" in row
    assert fxmaps.render_graph(graph).source.count("<I>opaque</I>") == 1
    # With the input, its conv is a node of its own.
    captured = _assert_captured(model, x, ["1"])
    assert "1.conv" in captured


@pytest.mark.parametrize("builtin", ["int", "float", "len"])
def test_builtins_in_a_helper_function_are_autowrapped(builtin: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Builtin(builtin, in_helper=True), nn.ReLU())
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    graph = _quiet_analyze(model, x)
    assert graph.opaque == ()
    helper = _BUILTINS[builtin]
    assert graph.autowrapped == (f"{helper.__module__}.{helper.__qualname__}",)
    assert [layer.name for layer in graph.layers("conv")] == ["0", "1.conv"]
    _assert_same_output(graph, model, x)
    _assert_same_output(graph, model, torch.randn(3, 3, 10, 10))  # computed at run time


class _AddsBias(nn.Module):
    """Updates its input in place and returns nothing: the caller keeps using its tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(4, 1, 1))

    def forward(self, x: torch.Tensor) -> None:
        x += self.bias


class _InPlaceOnInputs(nn.Module):
    """Augmented assignments whose old tensor is still read: through the caller, an
    alias, a view, and the model's own input."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        self.conv = nn.Conv2d(3, 4, 1)
        self.adds_bias = _AddsBias()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pattern == "input":
            x *= 2  # the caller's tensor: both the model and the graph update it
            return self.relu(self.conv(x))
        y = self.conv(x)
        if self.pattern == "submodule":
            self.adds_bias(y)
            return self.relu(y)
        if self.pattern == "alias":
            z = y
            y += 1
            return self.relu(z)
        if self.pattern == "view":
            flat = y.view(-1)
            y -= 1
            return self.relu(flat)
        y[:, 0] = 0  # item assignment, and an in-place method
        y.mul_(3)
        return self.relu(y)


@pytest.mark.parametrize("pattern", ["submodule", "alias", "view", "input", "setitem"])
def test_in_place_updates_of_inputs_are_traced_in_place(pattern: str) -> None:
    model = _InPlaceOnInputs(pattern).eval()
    x = torch.randn(1, 3, 5, 5)
    graph = _quiet_analyze(model, x.clone())
    assert graph.opaque == ()
    _assert_same_output(graph, model, x)
    # Each map is what its node produced then, as a hook cloning the output saw it.
    maps = fxmaps.extract(graph, x.clone(), layers=["conv", "relu"])
    hooked = hook_outputs(model, x.clone())
    for name in ("conv", "relu"):
        torch.testing.assert_close(maps[name], hooked[name][0], rtol=0, atol=0)


def test_augmented_assignment_nobody_reads_after_stays_out_of_place() -> None:
    graph = fxmaps.analyze(toy.CifarResNet())  # `out += shortcut` on a fresh tensor
    adds = graph.layers("add")
    assert adds
    assert {layer.target for layer in adds} == {"add"}
    assert {layer.name.rpartition(".")[2] for layer in adds} == {"add"}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_transformer_encoder_layer_inside_a_model_is_one_exact_node(train: bool) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
    model = nn.Sequential(nn.Linear(8, 16), layer, nn.Linear(16, 4)).train(train)
    x = torch.randn(2, 5, 8)
    graph = _quiet_analyze(model, x, train=train)
    assert graph.opaque == ()
    assert graph["1"].kind is fxmaps.Kind.ATTENTION
    assert [layer.name for layer in graph.layers("linear")] == ["0", "2"]
    # Eval mode without gradients takes torch's fast path, training mode its dropout: the
    # module runs as itself in the graph, so both match the model exactly.
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            torch.manual_seed(1)
            ours = graph.graph_module(x)
            torch.manual_seed(1)
            theirs = model(x)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.manual_seed(2)
    maps = fxmaps.extract(graph, x, layers=["1"])
    torch.manual_seed(2)
    hooked = hook_outputs(model.train(train), x)
    torch.testing.assert_close(maps["1"], hooked["1"][0], rtol=0, atol=0)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("cls", [nn.TransformerEncoderLayer, nn.TransformerEncoder])
def test_torch_transformer_as_the_model_is_one_opaque_node(
    cls: type[nn.Module], train: bool
) -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = layer if cls is nn.TransformerEncoderLayer else nn.TransformerEncoder(layer, 2)
    model.train(train)
    x = torch.randn(2, 5, 16)
    with pytest.warns(fxmaps.FxmapsWarning, match=rf"torch.nn's {cls.__name__} is kept whole"):
        graph = fxmaps.analyze(model, x, train=train)
    assert len(graph.opaque) == 1
    (node,) = [layer for layer in graph.layers() if layer.opaque]
    assert node.module is model
    assert node.kind is fxmaps.Kind.ATTENTION
    assert [layer.kind for layer in graph.layers()] == [
        fxmaps.Kind.INPUT, fxmaps.Kind.ATTENTION, fxmaps.Kind.OUTPUT
    ]  # fmt: skip
    assert model.training is train
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(graph.graph_module(x), model(x), rtol=0, atol=0)
    maps = fxmaps.extract(graph, x, layers=[node.name])
    with torch.no_grad():
        torch.testing.assert_close(maps[node.name], model.train(train)(x), rtol=0, atol=0)


# -- timm's registries of untraceable modules and functions -----------------------------------


class _Padded(nn.Module):
    """Pads to a multiple of 4 only when needed: control flow on a shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4:
            x = F.pad(x, (0, 4 - x.shape[-1] % 4))
        return self.conv(x)


def _inner_width(x: torch.Tensor) -> int:
    return int(x.shape[-1])


def _outer_scale(x: torch.Tensor) -> float:
    return 1.0 / _inner_width(x)


class _Scaled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _outer_scale(x)


@pytest.fixture
def timm_registry() -> Iterator[Any]:
    """timm's registry module; what a test registers is removed again."""
    pytest.importorskip("timm", reason="timm is an optional extra: pip install fxmaps[timm]")
    from timm.layers import _fx

    modules, functions = set(_fx._leaf_modules), set(_fx._autowrap_functions)
    yield _fx
    _fx._leaf_modules.intersection_update(modules)
    _fx._autowrap_functions.intersection_update(functions)


def _roots_traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    roots: list[str] = []
    original = SymbolicTracer.trace

    def counting(self: SymbolicTracer, root: nn.Module, **kwargs: object) -> object:
        roots.append(type(root).__name__)
        return original(self, root, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SymbolicTracer, "trace", counting)
    return roots


@pytest.mark.parametrize("registered", [False, True], ids=["probed", "registered"])
def test_timm_registered_module_class_is_opaque_without_probing(
    timm_registry: Any, monkeypatch: pytest.MonkeyPatch, registered: bool
) -> None:
    if registered:
        timm_registry.register_notrace_module(_Padded)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Padded(), _Padded(), _Padded()).eval()
    roots = _roots_traced(monkeypatch)
    x = torch.randn(1, 3, 6, 6)
    with pytest.warns(fxmaps.FxmapsWarning, match=r"'1' \(_Padded: .*if x.shape\[-1\] % 4"):
        graph = fxmaps.analyze(model)
    assert [o.name for o in graph.opaque] == ["1", "2", "3"]
    note = "timm registers _Padded as not traceable"
    assert all((note in o.reason) is registered for o in graph.opaque)
    # Registered: one failing trace and the final one. Otherwise the twins are probed.
    probes = roots.count("_Padded")
    assert (roots.count("Sequential"), probes) == (2, 0 if registered else 2)
    _assert_same_output(graph, model, x)
    maps = fxmaps.extract(graph, x, layers=["2"])
    torch.testing.assert_close(maps["2"], hook_outputs(model, x)["2"][0], rtol=0, atol=0)
    _assert_captured(model, x, ["1", "2", "3"])


@pytest.mark.parametrize("registered", [False, True], ids=["innermost", "registered"])
def test_timm_registered_function_is_the_one_autowrapped(
    timm_registry: Any, registered: bool
) -> None:
    if registered:
        timm_registry.register_notrace_function(_outer_scale)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Scaled()).eval()
    x = torch.randn(1, 3, 5, 5)
    graph = _quiet_analyze(model, x)
    assert graph.opaque == ()
    wrapped = _outer_scale if registered else _inner_width  # else the innermost helper
    assert graph.autowrapped == (f"{__name__}.{wrapped.__name__}",)
    _assert_same_output(graph, model, x)
    _assert_same_output(graph, model, torch.randn(1, 3, 7, 7))


def test_timm_model_with_registered_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install fxmaps[timm]")
    from timm.models.convit import GPSA

    model = timm.create_model(
        "convit_tiny", pretrained=False, depth=3, local_up_to_layer=2, img_size=32
    ).eval()
    roots = _roots_traced(monkeypatch)
    x = torch.randn(1, 3, 32, 32)
    with pytest.warns(fxmaps.FxmapsWarning, match="timm registers GPSA as not traceable"):
        graph = fxmaps.analyze(model)
    gpsa = [name for name, module in model.named_modules() if isinstance(module, GPSA)]
    assert [o.name for o in graph.opaque] == gpsa == ["blocks.0.attn", "blocks.1.attn"]
    assert roots == ["ConVit", "ConVit"]
    assert graph["blocks.2.attn.qkv"].kind is fxmaps.Kind.LINEAR  # not a GPSA: traced into
    _assert_same_output(graph, model, x)
    maps = fxmaps.extract(graph, x, layers=gpsa)
    hooked = hook_outputs(model, x)
    for name in gpsa:
        torch.testing.assert_close(maps[name], hooked[name][0], rtol=0, atol=0)
    captured = _assert_captured(model, x, gpsa)
    assert "blocks.0.attn.qk" in captured  # GPSA's own linears, inside what timm registers


def test_timm_is_never_imported_for_other_models() -> None:
    code = (
        "import sys, torch, fxmaps\n"
        "fxmaps.analyze(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), torch.zeros(1, 3, 4, 4))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'timm'))\n"
    )
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "[]"


class _Forgiving(nn.Module):
    """Catches the error symbolic tracing raises (fx's TraceError is a ValueError)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            if x.mean() > 0:
                x = x.flip(-1)
        except ValueError:
            x = x * 2
        return x


def test_a_trace_error_the_model_catches_still_makes_its_module_opaque() -> None:
    model = nn.Sequential(_Forgiving(), nn.Conv2d(3, 3, 1)).eval()
    x = torch.randn(1, 3, 4, 4)
    # Traced, the `except` branch would be recorded: a graph that always doubles.
    with pytest.warns(fxmaps.FxmapsWarning, match=r"'0' \(_Forgiving: .*if x.mean\(\) > 0"):
        graph = fxmaps.analyze(model)
    assert [o.name for o in graph.opaque] == ["0"]
    for sign in (1, -1):  # both branches, as the model takes them
        _assert_same_output(graph, model, sign * x)
    # Captured, the branch runs as Python each time: the conv's map follows either one.
    captured = _assert_captured(model, x.abs(), ["0"])
    for sign in (1, -1):
        maps = fxmaps.extract(captured, sign * x.abs(), layers=["1"])
        torch.testing.assert_close(maps["1"], hook_outputs(model, sign * x.abs())["1"][0])


def _clamped_window(window: list[int], size: list[int]) -> list[int]:
    """Shrinks ``window`` in place to ``size`` (torchvision's video Swin does the same)."""
    for i, side in enumerate(size):
        if side < window[i]:
            window[i] = side
    return window


torch.fx.wrap("_clamped_window")


class _Windowed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.window = [4, 4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = _clamped_window(self.window.copy(), [x.shape[-2], x.shape[-1]])
        return F.avg_pool2d(x, window)


def test_wrapped_helpers_may_update_the_lists_they_are_given() -> None:
    # fx keeps `self.window.copy()` as an immutable list in the graph; shape propagation
    # (an fx.Interpreter) would hand that list to the helper, which updates it.
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Windowed()).eval()
    for size in (3, 8):
        x = torch.randn(1, 3, size, size)
        graph = _quiet_analyze(model, x)
        assert graph["output"].out_shape == tuple(model(x).shape)
        _assert_same_output(graph, model, x)
    assert model[1].window == [4, 4]
