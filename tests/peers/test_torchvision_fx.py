"""torchvision's own feature-extraction tests (``TestFxFeatureExtraction`` in
``test/test_backbone_utils.py``), rewritten for fxmaps with torchvision as the oracle.

Each case asks what torchvision's asks, of fxmaps: the same node names (sampled from
``get_graph_node_names``, train and eval graphs) build an extractor, as a list or as a
renaming dict; its maps equal ``create_feature_extractor``'s, except where a later
in-place op overwrote torchvision's (those fxmaps copies or runs out of place, and
says so); training-mode maps carry gradients; ``IntermediateLayerGetter`` and module
paths agree; the train and eval graphs follow the model's own ``if self.training``;
leaf modules and autowrapped functions stay single nodes. Their TorchScript case is
skipped: an fxmaps extractor returns a ``FeatureMaps``, which TorchScript cannot type.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import fxmaps
from tests.oracles import hook_outputs
from tests.zoo.catalog import ZooModel, build

SAMPLE = ("resnet18", "mobilenet_v3_small", "vit_b_32")
MODELS = [
    pytest.param(name, id=name, marks=() if name in SAMPLE else pytest.mark.zoo)
    for name in sorted(torchvision.models.list_models(module=torchvision.models))
]
_NOT_TENSORS = ("getitem", "floordiv", "size", "chunk", "_assert", "eq", "dim", "getattr")


def _model(name: str) -> nn.Module:
    return build(ZooModel("classification", name), num_classes=1)


def _input(name: str = "", batch: int = 1) -> torch.Tensor:
    side = 299 if name == "inception_v3" else 224  # its auxiliary head, in training mode
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))


def _sampled(model: nn.Module) -> tuple[list[str], list[str]]:
    """Ten train-graph and ten eval-graph names, as torchvision's test picks them."""
    train, evaluation = get_graph_node_names(model, suppress_diff_warning=True)
    pick = random.Random(0)
    usable = [
        [n for n in names if not any(word in n for word in _NOT_TENSORS)]
        for names in (train, evaluation)
    ]
    return pick.sample(usable[0], 10), pick.sample(usable[1], 10)


def _ours(g: fxmaps.ModelGraph, theirs: str) -> str:
    """The node torchvision's name means: the node it is the alias of (torchvision names
    module ``ln_2``'s node ``ln_1``), else the node or module of that name."""
    aliased = [layer.name for layer in g.layers() if layer.alias == theirs]
    if aliased:
        return aliased[0]
    (layer,) = g.layers([theirs])
    return layer.name


def _flat(key: str, value: Any) -> dict[str, torch.Tensor]:
    """A value's tensors under fxmaps's keys (``name[0]``, ``name['key']``)."""
    if isinstance(value, torch.Tensor):
        return {key: value}
    if isinstance(value, Sequence):
        return {k: v for i, item in enumerate(value) for k, v in _flat(f"{key}[{i}]", item).items()}
    if isinstance(value, Mapping):
        return {k: v for n, item in value.items() for k, v in _flat(f"{key}[{n!r}]", item).items()}
    return {}


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_names_build_extractors_equal_to_torchvision(name: str) -> None:
    model = _model(name)
    x = _input(name)
    _, evaluation = _sampled(model)
    g = fxmaps.analyze(model, x)
    with torch.no_grad():
        theirs = create_feature_extractor(
            model, return_nodes=evaluation, suppress_diff_warning=True
        )(x)
    nodes = {node: _ours(g, node) for node in evaluation}
    as_list = fxmaps.FeatureExtractor(g, list(nodes.values()))
    as_dict = fxmaps.FeatureExtractor(g, {ours: node for node, ours in nodes.items()})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", fxmaps.FxmapsWarning)  # nodes holding no tensor
        plain, renamed = as_list(x), as_dict(x)
    protected = set(as_list.snapshots) | set(as_list.out_of_place)
    for node in evaluation:
        expected = _flat(node, theirs[node])
        if not expected:  # torchvision returns a Python number here: fxmaps skips it, warning
            assert nodes[node] in plain.skipped, node
            continue
        for key, tensor in expected.items():
            assert torch.equal(renamed[key], plain[key.replace(node, nodes[node], 1)])
            if not torch.equal(renamed[key], tensor):  # torchvision's map was overwritten later
                assert protected, f"{key} differs from torchvision's and fxmaps saw no in-place op"
    with pytest.raises(fxmaps.NodeNotFoundError, match=r"no node named 'l'"):
        fxmaps.FeatureExtractor(g, ["l"])
    with pytest.raises(fxmaps.OptionError, match=r"selects nothing"):
        fxmaps.FeatureExtractor(g, [])


@pytest.mark.parametrize("name", MODELS)
def test_training_maps_carry_gradients(name: str) -> None:
    model = _model(name).train()
    x = _input(name, batch=2)  # batch norm in training mode needs two values per channel
    train, _ = _sampled(model)
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model, x, train=True), train)
    maps = extractor(x)
    assert all(t.requires_grad for t in maps.values() if t.is_floating_point())
    total = torch.stack([t.mean() for t in maps.values() if t.requires_grad]).sum()
    torch.autograd.backward(total)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_node_name_conventions_are_torchvisions() -> None:
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.relu(x + 1 + 1))

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.submodule = Inner()
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.relu(self.submodule(x) + 1 + 1))

    theirs, _ = get_graph_node_names(Outer())
    ours = [layer.name for layer in fxmaps.analyze(Outer()).layers()]
    assert ours == [*theirs, "output"]  # fxmaps also names the output node


def test_intermediate_layer_getter_and_module_paths_agree() -> None:
    model = _model("resnet18")
    x = _input()
    returned = {f"layer{i}": f"layer{i}" for i in range(1, 5)}
    getter = IntermediateLayerGetter(model, returned).eval()
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model), returned)
    # the getter keeps the modules it runs; the extractor shares all of the model's, under
    # the model's names (so a checkpoint of the model loads into it)
    assert {id(p) for p in getter.parameters()} <= {id(p) for p in extractor.parameters()}
    assert [(n, id(p)) for n, p in extractor.named_parameters()] == [
        (n, id(p)) for n, p in model.named_parameters()
    ]
    with torch.no_grad():
        expected, ours = getter(x), extractor(x)
    assert list(ours) == list(expected)
    for key, tensor in expected.items():
        assert torch.equal(ours[key], tensor), key


class _TrainEval(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x.mean())
        if self.training:
            x += 100
        else:
            x *= 0
        x -= 0
        return x


@pytest.mark.parametrize("train", [True, False])
def test_train_and_eval_graphs_follow_the_models_branches(train: bool) -> None:
    model = _TrainEval().train(not train)  # the graph's mode is the argument, not the model's
    x = torch.ones(10, 10)
    g = fxmaps.analyze(model, x, train=train)
    branch, other = ("add", "mul") if train else ("mul", "add")
    assert branch in g
    assert other not in g
    maps = fxmaps.extract(g, x, layers=["dropout", branch, "sub"])  # in the graph's mode
    assert model.training is not train  # left as it was
    model.train(train)
    seen = hook_outputs(model, x, names=["dropout"])
    with torch.no_grad():
        assert torch.equal(maps["sub"], model(x))
    assert torch.equal(maps["dropout"], seen["dropout"][0])


def _leaf_function(x: Any) -> int:
    return int(x)


class _Leaf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        int(x.shape[0])  # not traceable: a leaf
        return torch.relu(x + 4)


class _WithLeaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3)
        self.leaf_module = _Leaf()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _leaf_function(x.shape[0])
        return self.leaf_module(self.conv(x))


def test_leaf_modules_and_autowrapped_functions_stay_single_nodes() -> None:
    model = _WithLeaf().train()
    x = _input()
    g = fxmaps.analyze(
        model, x, leaf_modules=[_Leaf], autowrap_functions=[_leaf_function], train=True
    )
    assert "leaf_module" in g
    assert not [layer for layer in g.layers() if layer.target == "relu"]
    assert [name.rpartition(".")[2] for name in g.autowrapped] == ["_leaf_function"]
    maps = fxmaps.FeatureExtractor(g, ["leaf_module"])(x)
    seen = hook_outputs(model, x, names=["leaf_module"])
    assert torch.equal(maps["leaf_module"], seen["leaf_module"][0])
    maps["leaf_module"].mean().backward()
    assert model.conv.weight.grad is not None


@pytest.mark.skip(
    reason="TorchScript: a FeatureExtractor returns FeatureMaps, not a dict TorchScript can type"
)
def test_jit_forward_backward() -> None:
    """torchvision's ``test_jit_forward_backward`` scripts the extractor; not ported."""
