"""Every torchvision classification model, checked against an oracle that fxmaps does not share.

For each model (random weights, nothing downloaded):

* ``fxmaps.analyze(model)`` traces it without an example input, with no opaque module
  and no :class:`fxmaps.FxmapsWarning`;
* the conv + downsample nodes are exactly the conv modules that forward hooks see called
  during one real forward pass, plus the functional convs of the traced graph; the same
  for linear nodes (``nn.Linear`` calls plus ``F.linear`` nodes);
* for ResNet, ResNeXt, Wide ResNet and RegNet, the downsample nodes are exactly the convs
  of the shortcut modules, found by name here (fxmaps itself never reads names);
* the model is left as it was: modes, parameters and buffers, hooks and attributes.

Models are built on the meta device (no memory, no weight init) when their constructor
allows it, and the hook forward runs on a meta tensor. A small sample runs by default;
``pytest -m zoo`` runs the rest.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import fx, nn

import fxmaps
from tests.oracles import assert_unchanged, hook_outputs, module_calls, snapshot

ALL_MODELS: list[str] = sorted(torchvision.models.list_models(module=torchvision.models))
SAMPLE: tuple[str, ...] = (
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "regnet_y_400mf",
    "regnet_x_400mf",
    "vgg11",
    "alexnet",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "densenet121",
    "googlenet",
    "inception_v3",
    "squeezenet1_0",
    "shufflenet_v2_x0_5",
    "mnasnet0_5",
    "convnext_tiny",
    "swin_t",
    "vit_b_16",
    "maxvit_t",
)
ZOO_PARAMS = [
    pytest.param(name, id=name, marks=() if name in SAMPLE else pytest.mark.zoo)
    for name in ALL_MODELS
]

# Functional convs and linears: module forward hooks never see these calls.
CONV_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
        F.conv_transpose3d, torch.conv1d, torch.conv2d, torch.conv3d, torch.conv_transpose1d,
        torch.conv_transpose2d, torch.conv_transpose3d, torch.convolution,
    }
)  # fmt: skip
LINEAR_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({F.linear})

# The shortcut module of each family, by the last component of its qualified name.
SHORTCUT_MODULE = {
    "resnet": "downsample",
    "resnext": "downsample",
    "wide": "downsample",  # wide_resnet
    "regnet": "proj",
}


def test_sample_models_exist() -> None:
    assert set(SAMPLE) <= set(ALL_MODELS)


# -- building -------------------------------------------------------------------------------


def build(name: str) -> nn.Module:
    """The model with random weights: on the meta device when its constructor allows it."""
    model: nn.Module
    try:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None)
    except NotImplementedError:
        # RegNet computes its block widths with tensors and reads them back (.tolist()),
        # which meta tensors cannot do.
        model = torchvision.models.get_model(name, weights=None)
    return model


def image_size(name: str, model: nn.Module) -> int:
    """The side of the square image the model takes."""
    if isinstance(model, torchvision.models.VisionTransformer):
        # vit_h_14's default weights are for 518 pixels, the model built here takes 224.
        return int(model.image_size)
    crop = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size
    return int(crop[0])


# -- the oracle -------------------------------------------------------------------------------


@dataclass
class Calls:
    """Qualified names of the modules one real forward pass called, once per call."""

    conv: Counter[str]
    linear: Counter[str]
    attention: Counter[str]


def called_modules(model: nn.Module, size: int) -> Calls:
    """Run one eval-mode forward pass on a meta tensor with hooks on conv/linear/MHA modules."""
    if next(model.parameters()).device.type != "meta":
        model.to("meta")  # the checks on real values are done; the forward needs no data
    kinds = (nn.modules.conv._ConvNd, nn.Linear, nn.MultiheadAttention)
    hooked = [name for name, module in model.named_modules() if isinstance(module, kinds)]
    model.eval()
    seen = hook_outputs(model, torch.zeros(1, 3, size, size, device="meta"), names=hooked)
    return Calls(*(module_calls(model, seen, kind) for kind in kinds))


def function_calls(graph_module: fx.GraphModule, functions: frozenset[Callable[..., Any]]) -> int:
    return sum(
        1
        for node in graph_module.graph.nodes
        if node.op == "call_function" and node.target in functions
    )


def module_targets(layers: list[fxmaps.Layer]) -> Counter[str]:
    return Counter(layer.target for layer in layers if layer.module is not None)


def shortcut_convs(model: nn.Module, shortcut: str) -> set[str]:
    """Conv modules inside a module whose qualified name ends with ``shortcut``."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.conv._ConvNd) and shortcut in name.split(".")[:-1]
    }


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_model(name: str) -> None:
    model = build(name)
    for i, module in enumerate(model.modules()):
        module.training = i % 2 == 0  # mixed modes, which analyze must put back one by one
    before = snapshot(model)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = fxmaps.analyze(model)
    fxmaps_warnings = [
        str(w.message) for w in caught if issubclass(w.category, fxmaps.FxmapsWarning)
    ]
    assert fxmaps_warnings == []
    assert g.opaque == ()
    assert [layer.name for layer in g.layers() if layer.opaque] == []
    assert_unchanged(model, before)

    convs = g.layers(["conv", "downsample"])
    linears = g.layers("linear")
    attention = g.layers("attention")
    functional_convs = function_calls(g.graph_module, CONV_FUNCTIONS)
    functional_linears = function_calls(g.graph_module, LINEAR_FUNCTIONS)
    calls = called_modules(model, image_size(name, model))

    assert len(convs) == calls.conv.total() + functional_convs
    assert len(linears) == calls.linear.total() + functional_linears
    # Module by module: every conv/linear call the hooks saw is its own node, none inside
    # an opaque module.
    assert module_targets(convs) == calls.conv
    assert module_targets(linears) == calls.linear
    # nn.MultiheadAttention is one attention node; its out_proj Linear is never called as a
    # module (F.multi_head_attention_forward reads its weights), so no hook sees it either.
    assert module_targets(attention) == calls.attention
    out_projs = {f"{mha}.out_proj" for mha in calls.attention}
    assert not out_projs & set(calls.linear)

    family = name.split("_")[0].rstrip("0123456789")
    if family in SHORTCUT_MODULE:
        expected = shortcut_convs(model, SHORTCUT_MODULE[family])
        assert expected, f"no {SHORTCUT_MODULE[family]!r} convs found in {name}"
        assert {layer.target for layer in g.layers("downsample")} == expected
