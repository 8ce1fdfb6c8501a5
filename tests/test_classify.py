"""Classification: kinds, residual merges, downsample convs and blocks, from structure alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxmaps
from fxmaps import Kind
from fxmaps.classify.blocks import ROLE_SKIP
from fxmaps.graph.model_graph import ATTR_ROLE
from tests import models as toy
from tests.conftest import tv_model

HEADLINE = ("conv", "downsample", "linear", "sequential", "residual")


def headline(graph: fxmaps.ModelGraph) -> dict[str, int]:
    info = graph.info()
    return {key: info[key] for key in HEADLINE}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18", (17, 3, 1, 4, 8)),
        ("resnet50", (49, 4, 1, 4, 16)),
        ("resnet152", (151, 4, 1, 4, 50)),
        ("vgg16", (13, 0, 3, 2, 0)),
        ("alexnet", (5, 0, 3, 2, 0)),
    ],
)
def test_torchvision_census(name: str, expected: tuple[int, ...]) -> None:
    assert headline(fxmaps.analyze(tv_model(name))) == dict(zip(HEADLINE, expected, strict=True))


def test_resnet50_residuals_match_the_module_tree() -> None:
    model = tv_model("resnet50")
    graph = fxmaps.analyze(model)
    bottlenecks = [name for name, m in model.named_modules() if type(m).__name__ == "Bottleneck"]
    assert [r.block for r in graph.residuals()] == bottlenecks
    projected = {r.block for r in graph.residuals() if r.skip == "projection"}
    assert projected == {n for n in bottlenecks if model.get_submodule(n).downsample is not None}
    downsample = [layer.target for layer in graph.layers("downsample")]
    assert downsample == [f"{block}.downsample.0" for block in sorted(projected)]
    assert all(
        layer.block == layer.target.rsplit(".", 2)[0] for layer in graph.layers("downsample")
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (toy.CifarResNet, toy.CIFAR_RESNET),
        (toy.NamedShortcuts, toy.NAMED_SHORTCUTS),
        (toy.MultiBranch, toy.MULTI_BRANCH),
        (toy.NestedContainers, toy.NESTED_CONTAINERS),
        (toy.Conv1dNet, toy.CONV1D_NET),
        (toy.UNet, toy.UNET),
        (toy.SharedBlock, toy.SHARED_BLOCK),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_toy_model_census(model: type[nn.Module], expected: dict[str, Any]) -> None:
    graph = fxmaps.analyze(model())
    assert headline(graph) == expected["info"]
    if "downsample" in expected:
        assert [layer.name for layer in graph.layers("downsample")] == expected["downsample"]
    if "merges" in expected:
        assert [r.merge for r in graph.residuals()] == expected["merges"]
    if "residual_blocks" in expected:
        assert [r.block for r in graph.residuals()] == expected["residual_blocks"]
    if "skips" in expected:
        assert [r.skip.value for r in graph.residuals()] == expected["skips"]
    if "conv" in expected:
        assert [layer.name for layer in graph.layers("conv")] == expected["conv"]
    if "concat" in expected:
        assert [layer.name for layer in graph.layers("concat")] == expected["concat"]


def test_empty_sequential_shortcut_is_identity_not_downsample() -> None:
    graph = fxmaps.analyze(toy.CifarResNet())
    first = graph.residuals()[0]
    assert (first.block, first.skip, first.shortcut, first.downsample) == (
        "layer1.0",
        fxmaps.SkipKind.IDENTITY,
        (),
        (),
    )
    assert first.fork == "relu"  # the block input: the stem's activation


@pytest.mark.parametrize("name", ["proj", "skip", "banana"])
def test_shortcut_names_do_not_matter(name: str) -> None:
    """The same architecture with its shortcut renamed classifies identically."""
    reference = fxmaps.analyze(toy.CifarResNet())
    renamed = fxmaps.analyze(toy.CifarResNet(shortcut_name=name))
    assert [a.kind for a in renamed.layers()] == [b.kind for b in reference.layers()]
    assert [layer.name for layer in renamed.layers("downsample")] == [
        f"layer2.0.{name}.0",
        f"layer3.0.{name}.0",
    ]


def test_main_path_conv_named_downsample_stays_a_conv() -> None:
    graph = fxmaps.analyze(toy.NamedShortcuts())
    assert graph["downsample"].kind is Kind.CONV
    assert graph["proj"].kind is Kind.DOWNSAMPLE


def test_equal_conv_branches_are_a_merge_not_a_residual() -> None:
    graph = fxmaps.analyze(toy.MultiBranch())
    assert graph["left"].kind is graph["right"].kind is Kind.CONV
    assert [r.merge for r in graph.residuals()] == ["add_1"]


def test_feature_pyramid_merges_are_not_residuals() -> None:
    """Top-down adds span modules outside the FPN: long-range merges, not residual blocks."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    graph = fxmaps.analyze(backbone)
    residual_blocks = {r.block for r in graph.residuals()}
    assert len(residual_blocks) == 8
    assert all(b.startswith("body.layer") for b in residual_blocks)
    assert len(graph.layers("downsample")) == 3
    assert not any(layer.name.startswith("fpn.") for layer in graph.layers("downsample"))


def test_transformer_residuals() -> None:
    graph = fxmaps.analyze(tv_model("vit_b_16"))
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    assert [r.block for r in graph.residuals()] == [b for b in blocks for _ in range(2)]
    assert all(r.skip is fxmaps.SkipKind.IDENTITY for r in graph.residuals())
    assert graph.info()["residual"] == 12
    assert graph.info()["attention"] == 12


def test_efficientnet_blocks_are_residual_only_where_shapes_allow() -> None:
    model = tv_model("efficientnet_b0")
    graph = fxmaps.analyze(model)
    expected = [name for name, m in model.named_modules() if getattr(m, "use_res_connect", False)]
    assert sorted(r.block for r in graph.residuals()) == sorted(expected)


def test_blocks_nest_and_layers_know_their_block() -> None:
    graph = fxmaps.analyze(toy.NestedContainers())
    for name, block in toy.NESTED_CONTAINERS["blocks"].items():
        assert graph[name].block == block
    blocks = {b.name: b for b in graph.blocks()}
    assert blocks["head.0"].parent == "head"
    assert blocks["head"].parent is None
    assert blocks["head"].layers == ("head.0.0", "head.0.1", "head.1", "head.2")


def test_kinds_of_functional_and_method_calls() -> None:
    graph = fxmaps.analyze(toy.FunctionalNet())
    assert [layer.name for layer in graph.layers("conv")] == toy.FUNCTIONAL_NET["conv"]
    assert [layer.name for layer in graph.layers("linear")] == toy.FUNCTIONAL_NET["linear"]
    assert graph["relu"].kind is Kind.ACTIVATION
    assert graph["weight"].kind is Kind.PARAMETER
    assert graph["x"].kind is Kind.INPUT
    assert graph["output"].kind is Kind.OUTPUT


def test_registered_rules_apply_and_reset() -> None:
    class Sparse(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Sparse())
    try:
        fxmaps.register_module_kind(Sparse, "activation")
        graph = fxmaps.analyze(model, leaf_modules=[Sparse])
        assert graph["1"].kind is Kind.ACTIVATION
        fxmaps.register_function_kind(torch.flatten, Kind.OTHER)
        flat = fxmaps.analyze(_Flattener())
        assert flat["flatten"].kind is Kind.OTHER
    finally:
        fxmaps.reset_kind_rules()
    assert fxmaps.analyze(model, leaf_modules=[Sparse])["1"].kind is Kind.OTHER
    assert fxmaps.analyze(_Flattener())["flatten"].kind is Kind.RESHAPE


class _Flattener(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def test_kind_is_a_closed_str_enum() -> None:
    assert Kind("conv") is Kind.CONV
    assert str(Kind.CONV) == "conv"
    with pytest.raises(ValueError, match="'convolution' is not a valid Kind"):
        Kind("convolution")


def test_residual_merges_in_the_models_own_forward_are_blocks() -> None:
    graph = fxmaps.analyze(toy.NamedShortcuts())
    assert [(b.name, b.kind.value, b.parent) for b in graph.blocks()] == [
        ("add", "residual", None),
        ("body1", "sequential", "add"),
        ("add_1", "residual", None),
        ("body2", "sequential", "add_1"),
    ]
    assert graph.blocks()[0].layers == ("body1.0", "body1.1", "body1.2", "proj", "add")
    assert graph["body1.0"].block == "body1"
    assert graph["proj"].block == "add"
    assert graph["skip.1"].block == "add_1"  # the shortcut Sequential is no block of its own
    assert graph["downsample"].block is None


class _IdentityModuleShortcut(nn.Module):
    """timm's usual block: ``self.shortcut = nn.Identity()`` when no projection is needed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


def test_identity_module_shortcut_is_an_identity_skip() -> None:
    """Found by tests/test_properties.py: an nn.Identity shortcut was 'parameter-free', and
    its edges were drawn as a projection shortcut."""
    graph = fxmaps.analyze(_IdentityModuleShortcut())
    (residual,) = graph.residuals()
    assert (residual.skip, residual.shortcut, residual.downsample) == (
        fxmaps.SkipKind.IDENTITY,
        ("shortcut",),
        (),
    )
    edges = graph.nx.edges
    assert edges["x", "shortcut"][ATTR_ROLE] == edges["shortcut", "add"][ATTR_ROLE] == ROLE_SKIP


class _SharedWeightBranches(nn.Module):
    """Both branches read one parameter (one ``get_attr`` node): a common ancestor of the
    add's operands that is not where the data forks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.conv(x), self.weight) + F.conv2d(x, self.weight)


def test_a_parameter_both_branches_read_is_not_the_fork() -> None:
    """Found while writing tests/test_properties.py (whose reused F.conv parts hit it): the
    shared weight was taken for the fork, so the main branch lost its first conv and the
    residual was read as an equal-branch merge."""
    graph = fxmaps.analyze(_SharedWeightBranches())
    (residual,) = graph.residuals()
    assert (residual.fork, residual.main, residual.shortcut, residual.downsample) == (
        "x",
        ("conv", "conv2d"),
        ("conv2d_1",),
        ("conv2d_1",),
    )


class _ReadsItsWeight(nn.Module):
    """A conv that reads its own weight (as timm's ``StdConv2d`` does): a ``get_attr`` node."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)


class _SequentialShortcutReadsAWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.shortcut = nn.Sequential(_ReadsItsWeight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + self.shortcut(x)


def test_a_shortcut_sequential_that_reads_a_weight_is_no_sequential_block() -> None:
    """Found by tests/test_properties.py: the weight's node is on no branch, so the shortcut
    Sequential seemed to hold a main-path layer and counted as a sequential block."""
    graph = fxmaps.analyze(_SequentialShortcutReadsAWeight())
    assert headline(graph) == {
        "conv": 2,
        "downsample": 1,
        "linear": 0,
        "sequential": 0,
        "residual": 1,
    }
    assert [layer.name for layer in graph.layers("downsample")] == ["shortcut.0.conv2d"]


class _RootAddReadsAWeight(nn.Module):
    """A residual add in the model's own forward; its main Sequential starts by reading a
    weight."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(_ReadsItsWeight(), nn.Conv2d(2, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


def test_a_root_residual_block_holds_the_weights_its_branches_read() -> None:
    """Found by tests/test_properties.py: the weight's node was left out of the block of a
    residual add in the model's own forward, so the Sequential it opens lost its parent and
    render_graph(collapse="blocks") drew the block apart, with a cycle."""
    graph = fxmaps.analyze(_RootAddReadsAWeight())
    assert [(b.name, b.kind.value, b.parent) for b in graph.blocks()] == [
        ("add", "residual", None),
        ("body", "sequential", "add"),
    ]
    assert graph.blocks()[0].layers == ("body.0.body_0_weight", "body.0.conv2d", "body.1", "add")


class _WeightSharedWithARootBlock(nn.Module):
    """One weight read in a Sequential, then again in a residual add in the model's own
    forward: the weight's node is in the Sequential, not in the later block."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = _ReadsItsWeight()
        self.body = nn.Sequential(self.reads, nn.Conv2d(2, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.reads(y) + y


class _WeightSharedOutOfARootBlock(nn.Module):
    """One weight first read inside a residual block of the model's own forward, then
    again after it: the block's Sequential still nests in the block."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = _ReadsItsWeight()
        self.body = nn.Sequential(self.reads, nn.Conv2d(2, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reads(self.body(x) + x)


@pytest.mark.parametrize(
    ("model", "blocks", "collapsed"),
    [
        (
            _WeightSharedWithARootBlock,
            [("body", "sequential", None), ("add", "residual", None)],
            {("x", "body"), ("body", "add"), ("add", "output")},
        ),
        (
            _WeightSharedOutOfARootBlock,
            [("add", "residual", None), ("body", "sequential", "add")],
            {("x", "add"), ("add", "reads.conv2d_1"), ("reads.conv2d_1", "output")},
        ),
    ],
    ids=["read-again-in-block", "read-again-after-block"],
)
def test_a_shared_weight_does_not_change_how_blocks_nest(
    model: type[nn.Module],
    blocks: list[tuple[str, str, str | None]],
    collapsed: set[tuple[str, str]],
) -> None:
    """Found by tests/test_properties.py: a weight read in two blocks made one block the
    parent of the other, and the collapsed diagram a cycle."""
    graph = fxmaps.analyze(model())
    assert [(b.name, b.kind.value, b.parent) for b in graph.blocks()] == blocks
    assert graph["reads.reads_weight"].block == "body"  # where it is first read
    source = fxmaps.render_graph(graph, collapse="blocks").source
    edges = re.findall(r'^\t"?([\w.]+)"? -> "?([\w.]+)"?', source, re.MULTILINE)
    assert set(edges) == collapsed


class _SelfOutput(nn.Module):
    """Adds the skip it is handed as an argument, as transformers' ``BertSelfOutput`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, hidden: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dense(hidden) + skip)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.output = _SelfOutput()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.inner(x), x)


def test_an_identity_skip_handed_to_a_submodule_is_its_parent_s_residual() -> None:
    model = nn.Sequential(nn.Linear(8, 8), _Attention(), _Attention())
    graph = fxmaps.analyze(model, torch.randn(2, 8))
    residuals = graph.residuals()
    assert [(r.merge, r.block, r.skip) for r in residuals] == [
        ("1.output.add", "1", fxmaps.SkipKind.IDENTITY),
        ("2.output.add", "2", fxmaps.SkipKind.IDENTITY),
    ]
    assert residuals[0].main == ("1.inner", "1.output.dense")
    assert graph.info()["residual"] == 2
