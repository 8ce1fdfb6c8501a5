"""extract() and FeatureExtractor: every map equals what its node produced, bit for bit."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import fxmaps
from fxmaps import Kind
from fxmaps.extract import extractor as extractor_module
from fxmaps.extract import rewrite
from fxmaps.graph import Selection
from tests import models as toy
from tests.conftest import tv_model
from tests.oracles import assert_unchanged, hook_outputs, snapshot

ORACLE_MODELS = [
    ("resnet18", lambda: tv_model("resnet18"), (torch.randn(2, 3, 64, 64),)),
    ("mobilenet_v3_small", lambda: tv_model("mobilenet_v3_small"), (torch.randn(2, 3, 64, 64),)),
    ("densenet121", lambda: tv_model("densenet121"), (torch.randn(1, 3, 64, 64),)),
    ("vit_b_16", lambda: tv_model("vit_b_16"), (torch.randn(1, 3, 224, 224),)),
    ("convnext_tiny", lambda: tv_model("convnext_tiny"), (torch.randn(1, 3, 64, 64),)),
    ("efficientnet_b0", lambda: tv_model("efficientnet_b0"), (torch.randn(1, 3, 64, 64),)),
    ("cifar_resnet", toy.CifarResNet, (torch.randn(2, 3, 16, 16),)),
    ("called_twice", toy.SharedBlock, (torch.randn(2, 3, 8, 8),)),
    ("two_inputs", toy.TwoInputs, (torch.randn(2, 3, 8, 8), torch.randn(2, 6))),
    ("functional", toy.FunctionalNet, (torch.randn(2, 3, 8, 8),)),
    ("conv1d", toy.Conv1dNet, (torch.randn(2, 2, 32),)),
    ("unet", toy.UNet, (torch.randn(1, 3, 32, 32),)),
    ("squeeze_excite", toy.SqueezeExcite, (torch.randn(2, 3, 8, 8),)),
]


@pytest.mark.parametrize(
    ("name", "build", "inputs"), ORACLE_MODELS, ids=[m[0] for m in ORACLE_MODELS]
)
def test_every_module_map_equals_its_forward_hook(
    name: str, build: object, inputs: tuple[torch.Tensor, ...]
) -> None:
    model: nn.Module = build().eval()  # type: ignore[operator]
    graph = fxmaps.analyze(model)
    maps = fxmaps.extract(graph, inputs, layers=lambda layer: layer.module is not None)
    seen = hook_outputs(model, *inputs)
    calls: dict[str, int] = defaultdict(int)
    compared = 0
    for layer in graph.layers():
        if layer.module is None:
            continue
        expected = seen[layer.target][calls[layer.target]]
        calls[layer.target] += 1
        if isinstance(expected, torch.Tensor):
            assert torch.equal(maps[layer.name], expected), layer.name
            compared += 1
        else:  # nn.MultiheadAttention returns (output, weights): a map for each tensor
            for index, part in enumerate(expected):
                key = f"{layer.name}[{index}]"
                if part is None:  # the weights, when not asked for
                    assert key not in maps
                    continue
                assert torch.equal(maps[key], part), key
                compared += 1
    assert compared == len(maps) > 0
    assert not maps.skipped


def test_functional_nodes_equal_the_models_own_computation() -> None:
    model = toy.FunctionalNet().eval()
    x = torch.randn(2, 3, 8, 8)
    maps = fxmaps.extract(model, x, layers=["conv2d", "relu", "linear"])
    with torch.no_grad():
        first = torch.nn.functional.conv2d(x, model.weight, padding=1)
        assert torch.equal(maps["conv2d"], first)
        assert torch.equal(maps["relu"], torch.relu(first))
        assert torch.equal(maps["linear"], model(x))


def test_maps_equal_torchvisions_where_torchvision_is_right() -> None:
    model = tv_model("resnet18")
    x = torch.randn(2, 3, 64, 64)
    names = ["layer2.0.conv1", "layer3.1.bn2", "layer4.1.relu_1", "fc"]  # nothing overwrites these
    with torch.no_grad():
        theirs = create_feature_extractor(model, names)(x)
    ours = fxmaps.extract(model, x, layers=names)
    for name in names:
        assert torch.equal(ours[name], theirs[name]), name


# -- in-place operations ------------------------------------------------------------------------


def test_inplace_relu_does_not_overwrite_the_batchnorm_map() -> None:
    """torchvision returns the post-ReLU tensor for 'bn1'; fxmaps returns the real bn1."""
    model = tv_model("resnet18")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        theirs = create_feature_extractor(model, ["bn1", "relu"])(x)
    assert theirs["bn1"] is theirs["relu"]  # the torchvision bug fxmaps must not inherit
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model), ["bn1", "relu"])
    with torch.no_grad():
        ours = extractor(x)
    assert ours["bn1"].min() < 0 <= ours["relu"].min()
    assert torch.equal(ours["bn1"], hook_outputs(model, x)["bn1"][0])
    assert torch.equal(ours["relu"], torch.relu(ours["bn1"]))
    # Nothing reads bn1's tensor after the ReLU, so the ReLU runs out of place (on a copy
    # of the module) and bn1's map needs no copy of its own.
    assert (extractor.snapshots, extractor.out_of_place) == ((), ("relu",))
    assert model.get_submodule("relu").inplace


def test_residual_add_does_not_overwrite_the_bn2_map() -> None:
    """A hook that keeps bn2's output without cloning sees it after ``out += identity``."""
    model = toy.CifarResNet().eval()
    x = torch.randn(2, 3, 16, 16)
    kept: list[torch.Tensor] = []
    handle = model.get_submodule("layer1.0.bn2").register_forward_hook(
        lambda _m, _i, out: kept.append(out)
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    true_bn2 = hook_outputs(model, x)["layer1.0.bn2"][0]
    assert not torch.equal(kept[0], true_bn2)  # the forward-hook approach gets this wrong
    maps = fxmaps.extract(model, x, layers=["layer1.0.bn2"])
    assert torch.equal(maps["layer1.0.bn2"], true_bn2)


def test_inplace_through_an_identity_alias() -> None:
    model = toy.SqueezeExcite().eval()
    with torch.no_grad():  # every fc1 output negative, so the ReLU changes all of them
        model.get_submodule("fc1").bias.fill_(-10.0)  # type: ignore[operator]
    x = torch.randn(2, 3, 8, 8)
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model), ["fc1", "bn", "act"])
    with torch.no_grad():
        maps = extractor(x)
    seen = hook_outputs(model, x)
    assert torch.equal(maps["fc1"], seen["fc1"][0])
    assert maps["fc1"].max() < 0
    assert torch.equal(maps["act"], torch.relu(maps["fc1"]))
    assert (extractor.snapshots, extractor.out_of_place) == ((), ("act",))


def test_every_form_of_inplace_op() -> None:
    model = toy.InplaceOps().eval()
    x = torch.randn(2, 3, 6, 6)
    graph = fxmaps.analyze(model)
    names = ["conv1", "conv2", "conv3", "conv4", "flatten"]
    extractor = fxmaps.FeatureExtractor(graph, names)
    with torch.no_grad():
        maps = extractor(x)
        w = {n: model.get_submodule(n) for n in ("conv1", "conv2", "conv3", "conv4")}
        conv1 = w["conv1"](x)
        conv2 = w["conv2"](torch.relu(conv1))
        conv3 = w["conv3"](conv2 + 1)
        cleared = conv3.clone()
        cleared[:, 0] = 0
        conv4 = w["conv4"](cleared)
    assert torch.equal(maps["conv1"], conv1)
    assert torch.equal(maps["conv2"], conv2)
    assert torch.equal(maps["conv3"], conv3)
    assert torch.equal(maps["conv4"], conv4)
    assert torch.equal(maps["flatten"], conv4.flatten(2))
    # F.relu(inplace=True) runs out of place; conv3 reads b after b.add_(1), and setitem
    # has no out-of-place twin, so conv2 and conv3 are copied. Nothing asked for needs
    # `flat.mul_(2)`, so it does not run at all.
    assert extractor.out_of_place == ("relu",)
    assert extractor.snapshots == ("conv2", "conv3")
    with_output = fxmaps.FeatureExtractor(graph, [*names, "output"])
    with torch.no_grad():
        again = with_output(x)
        assert torch.equal(again["output"], model(x))
    assert torch.equal(again["conv4"], conv4)
    assert torch.equal(again["flatten"], conv4.flatten(2))
    # The model returns `flat` after mul_: mul_ must run in place, overwriting conv4's map.
    assert with_output.snapshots == ("conv2", "conv3", "conv4", "flatten")


def test_unused_inplace_result_still_runs_when_a_later_node_needs_it() -> None:
    """``b.add_(1)``'s result is unused; fx's dead-code elimination would drop it."""
    model = toy.InplaceOps().eval()
    x = torch.randn(2, 3, 6, 6)
    maps = fxmaps.extract(model, x, layers=["conv3"])
    with torch.no_grad():
        b = model.conv2(torch.relu(model.conv1(x)))
        assert torch.equal(maps["conv3"], model.conv3(b + 1))


def test_a_wrapped_helper_that_updates_its_input_runs_and_keeps_earlier_maps() -> None:
    """The helper's result is unused, but it updates ``b`` in place (mvit's ``_add_shortcut``):
    it must run, and conv2's map must be what conv2 returned."""
    model = toy.WrappedInplaceHelper().eval()
    x = torch.randn(2, 3, 6, 6)
    seen = hook_outputs(model, x)
    for layers in (["conv3"], ["conv2", "conv3"]):
        maps = fxmaps.extract(model, x, layers=layers)
        for name in layers:
            assert torch.equal(maps[name], seen[name][0]), (layers, name)


def test_maps_nothing_overwrites_are_not_copied() -> None:
    graph = fxmaps.analyze(tv_model("resnet50"))
    conv = fxmaps.FeatureExtractor(graph, "conv")
    assert (conv.snapshots, conv.out_of_place) == ((), ())  # the ReLUs overwrite no conv map
    everything = fxmaps.FeatureExtractor(graph, "*")
    relus = [layer.name for layer in graph.layers() if isinstance(layer.module, nn.ReLU)]
    assert (everything.snapshots, everything.out_of_place) == ((), tuple(relus))


def test_a_mutation_the_analysis_cannot_see_is_caught_at_run_time() -> None:
    model = toy.HiddenMutation().eval()
    x = torch.randn(1, 3, 6, 6)
    graph = fxmaps.analyze(model, leaf_modules=[toy.Sneaky])
    extractor = fxmaps.FeatureExtractor(graph, ["conv", "sneaky"])
    assert not extractor.snapshots
    with torch.no_grad():
        maps = extractor(x)
        assert torch.equal(maps["conv"], model.conv(x))
    assert extractor.snapshots == ("conv",)


def test_inplace_flags_of_the_model_are_never_flipped() -> None:
    model = tv_model("resnet18")
    fxmaps.extract(model, torch.randn(1, 3, 32, 32), layers="*")
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


# -- selection ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_graph() -> fxmaps.ModelGraph:
    return fxmaps.analyze(tv_model("resnet18"))


X = torch.randn(1, 3, 32, 32)


def test_select_by_kind_in_execution_order(resnet18_graph: fxmaps.ModelGraph) -> None:
    maps = fxmaps.extract(resnet18_graph, X, layers="downsample")
    assert list(maps) == ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    both = fxmaps.extract(resnet18_graph, X, layers=[Kind.LINEAR, "downsample"])
    assert list(both) == ["fc", *maps]  # the kinds in the order asked, each in execution order


def test_select_by_names_keeps_the_order_asked(resnet18_graph: fxmaps.ModelGraph) -> None:
    maps = fxmaps.extract(resnet18_graph, X, layers=["fc", "conv1", "layer1.0.add"])
    assert list(maps) == ["fc", "conv1", "layer1.0.add"]


def test_select_by_glob_and_mixed(resnet18_graph: fxmaps.ModelGraph) -> None:
    maps = fxmaps.extract(resnet18_graph, X, layers=["layer3.*.conv?", "fc", "layer3.0.conv1"])
    assert list(maps) == [
        "layer3.0.conv1", "layer3.0.conv2", "layer3.1.conv1", "layer3.1.conv2", "fc"
    ]  # fmt: skip


def test_a_node_named_like_a_kind() -> None:
    """'conv' is the kind; the node named 'conv' is chosen by its Layer or a predicate."""
    graph = fxmaps.analyze(toy.FunctionalNet())
    x = torch.randn(1, 3, 8, 8)
    assert list(fxmaps.extract(graph, x, layers="conv")) == ["conv2d", "conv", "conv_1"]
    assert list(fxmaps.extract(graph, x, layers=[graph["conv"]])) == ["conv"]
    assert list(fxmaps.extract(graph, x, layers=lambda layer: layer.name == "conv")) == ["conv"]


def test_select_by_predicate(resnet18_graph: fxmaps.ModelGraph) -> None:
    maps = fxmaps.extract(resnet18_graph, X, layers=lambda layer: layer.block == "layer4.1")
    assert list(maps) == [
        layer.name for layer in resnet18_graph.layers() if layer.block == "layer4.1"
    ]


def test_unknown_name_suggests_close_matches(resnet18_graph: fxmaps.ModelGraph) -> None:
    with pytest.raises(
        fxmaps.NodeNotFoundError, match=r"'layer1.0.conv9'.*did you mean .*'layer1.0.conv1'"
    ) as excinfo:
        fxmaps.extract(resnet18_graph, X, layers=["layer1.0.conv9"])
    assert excinfo.value.name == "layer1.0.conv9"
    assert "layer1.0.conv1" in excinfo.value.candidates
    assert all(name in resnet18_graph for name in excinfo.value.candidates)


@pytest.mark.parametrize(
    ("layers", "error", "message", "facts"),
    [
        (
            "layer9.*",
            fxmaps.NodeNotFoundError,
            r"pattern 'layer9.\*' matches no node",
            {"name": "layer9.*"},
        ),
        ([], fxmaps.OptionError, r"layers=\[\] selects nothing", {"option": "layers", "value": []}),
        (
            "attention",
            fxmaps.OptionError,
            r"selects no node of ResNet; the kinds it has are: .*conv",
            {"option": "layers", "value": "attention"},
        ),
        (
            lambda layer: False,
            fxmaps.OptionError,
            r"selects no node of ResNet",
            {"option": "layers"},
        ),
        (
            [3],
            fxmaps.InputError,
            r"layers entries must be kinds, node names, glob patterns or layers, got int",
            {"argument": "layers", "got": "int"},
        ),
    ],
    ids=["pattern", "empty", "absent-kind", "predicate", "type"],
)
def test_selection_errors(
    resnet18_graph: fxmaps.ModelGraph,
    layers: object,
    error: type[Exception],
    message: str,
    facts: dict[str, object],
) -> None:
    with pytest.raises(error, match=message) as excinfo:
        fxmaps.extract(resnet18_graph, X, layers=layers)  # type: ignore[arg-type]
    assert {key: getattr(excinfo.value, key) for key in facts} == facts
    if isinstance(excinfo.value, fxmaps.OptionError):  # the kinds the graph has, from its layers
        kinds = {layer.kind.value for layer in resnet18_graph.layers()}
        assert excinfo.value.valid == tuple(sorted(kinds))


# -- memory controls ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_maps(resnet18_graph: fxmaps.ModelGraph) -> fxmaps.FeatureMaps:
    return fxmaps.extract(
        resnet18_graph, torch.randn(2, 3, 32, 32).abs(), layers=["layer1.0.conv1", "fc"]
    )


def _again(graph: fxmaps.ModelGraph, **options: object) -> fxmaps.FeatureMaps:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32).abs()
    return fxmaps.extract(graph, x, layers=["layer1.0.conv1", "fc"], **options)  # type: ignore[arg-type]


def test_channels_by_index_slice_and_top_k(resnet18_graph: fxmaps.ModelGraph) -> None:
    full = _again(resnet18_graph)["layer1.0.conv1"]
    picked = _again(resnet18_graph, channels=[5, 0, 63])
    assert torch.equal(picked["layer1.0.conv1"], full[:, [5, 0, 63]])
    assert picked.channels("layer1.0.conv1").tolist() == [5, 0, 63]  # type: ignore[union-attr]
    sliced = _again(resnet18_graph, channels=slice(8, 16, 2))
    assert torch.equal(sliced["layer1.0.conv1"], full[:, 8:16:2])
    top = _again(resnet18_graph, channels="top:4")
    best = full.mean(dim=(0, 2, 3)).topk(4).indices
    assert top.channels("layer1.0.conv1").tolist() == best.tolist()  # type: ignore[union-attr]
    assert torch.equal(top["layer1.0.conv1"], full[:, best])


def test_reduce_over_channels_and_space(resnet18_graph: fxmaps.ModelGraph) -> None:
    full = _again(resnet18_graph)["layer1.0.conv1"]
    assert torch.equal(
        _again(resnet18_graph, reduce="mean")["layer1.0.conv1"], full.mean(1, keepdim=True)
    )
    assert torch.equal(
        _again(resnet18_graph, reduce="max")["layer1.0.conv1"], full.amax(1, keepdim=True)
    )
    norm = _again(resnet18_graph, reduce="norm")["layer1.0.conv1"]
    assert torch.equal(norm, torch.linalg.vector_norm(full, dim=[1], keepdim=True))
    assert torch.equal(
        _again(resnet18_graph, reduce="mean:space")["layer1.0.conv1"], full.mean((2, 3))
    )
    assert _again(resnet18_graph, reduce="mean:space")["fc"].shape == (2, 1000)


def test_dtype_and_device(resnet18_graph: fxmaps.ModelGraph) -> None:
    full = _again(resnet18_graph)["layer1.0.conv1"]
    half = _again(resnet18_graph, dtype="float16", device="cpu")["layer1.0.conv1"]
    assert half.dtype == torch.float16
    assert torch.equal(half, full.half())


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("channels", "top:0", r"channels='top:0' is not valid; pass channel indices"),
        ("channels", 2.5, r"channels=2.5 is not valid"),
        ("reduce", "median", r"reduce='median' is not valid; use 'mean', 'max', 'norm'"),
        ("reduce", "mean:time", r"reduce='mean:time' is not valid"),
        ("dtype", "float17", r"dtype='float17' is not a torch dtype"),
    ],
)
def test_invalid_controls(
    resnet18_graph: fxmaps.ModelGraph, option: str, value: object, message: str
) -> None:
    with pytest.raises(fxmaps.OptionError, match=message) as excinfo:
        fxmaps.extract(resnet18_graph, X, **{option: value})  # type: ignore[arg-type]
    assert (excinfo.value.option, excinfo.value.value) == (option, value)


def test_channel_index_out_of_range(resnet18_graph: fxmaps.ModelGraph) -> None:
    with pytest.raises(
        fxmaps.OptionError, match=r"out of range for a map with 64 channels"
    ) as excinfo:
        fxmaps.extract(resnet18_graph, X, layers="conv1", channels=[64])
    assert (excinfo.value.option, excinfo.value.value) == ("channels", [64])
    assert excinfo.value.valid == ("-64..63",)


# -- transformers ---------------------------------------------------------------------------------


def test_vit_tokens_as_spatial_maps() -> None:
    model = tv_model("vit_b_16")
    x = torch.randn(2, 3, 224, 224)
    graph = fxmaps.analyze(model)
    name = "encoder.layers.encoder_layer_3.add_1"
    tokens = fxmaps.extract(graph, x, layers=[name])[name]
    assert tokens.shape == (2, 197, 768)
    grid = fxmaps.extract(graph, x, layers=[name, "conv_proj"], spatial=True)
    assert torch.equal(grid[name], tokens[:, 1:].reshape(2, 14, 14, 768).permute(0, 3, 1, 2))
    assert grid["conv_proj"].shape == (2, 768, 14, 14)  # already spatial, unchanged
    top = fxmaps.extract(graph, x, layers=[name], spatial=True, channels="top:3")[name]
    assert top.shape == (2, 3, 14, 14)


def test_swin_grids_as_spatial_maps() -> None:
    model = tv_model("swin_t")
    x = torch.randn(1, 3, 224, 224)
    graph = fxmaps.analyze(model)
    name = "features.1.1.add_1"
    grid = fxmaps.extract(graph, x, layers=[name])[name]
    assert grid.shape == (1, 56, 56, 96)
    assert graph[name].layout is fxmaps.Layout.CHANNELS_LAST
    spatial = fxmaps.extract(graph, x, layers=[name], spatial=True, reduce="mean:space")[name]
    assert torch.equal(spatial, grid.permute(0, 3, 1, 2).mean((2, 3)))


# -- the model and the cache ---------------------------------------------------------------------


def test_extract_leaves_the_model_as_it_was() -> None:
    model = tv_model("resnet18").train()
    model.get_submodule("layer3").eval()
    before = snapshot(model)
    fxmaps.extract(model, torch.randn(2, 3, 32, 32), layers="*")
    assert_unchanged(model, before)


def test_extract_from_a_training_graph_keeps_batchnorm_statistics() -> None:
    model = toy.CifarResNet().train()
    graph = fxmaps.analyze(model, train=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 16, 16)
    maps = fxmaps.extract(graph, x, layers=["layer1.0.bn1"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    seen = hook_outputs(model, x)  # a training-mode pass: batch statistics, as extracted
    assert torch.equal(maps["layer1.0.bn1"], seen["layer1.0.bn1"][0])
    # Called directly, the extractor runs as the model would and updates them.
    bn = model.get_submodule("layer1.0.bn1")
    assert isinstance(bn, nn.BatchNorm2d)
    assert bn.num_batches_tracked is not None
    tracked = int(bn.num_batches_tracked)
    fxmaps.FeatureExtractor(graph, ["layer1.0.bn1"])(x)
    assert int(bn.num_batches_tracked) == tracked + 1


def test_extractors_are_cached_per_graph_and_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = fxmaps.analyze(toy.CifarResNet())
    builds: list[int] = []
    original = rewrite.build_extraction

    def counting(*args: object) -> object:
        builds.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(extractor_module, "build_extraction", counting)
    x = torch.randn(1, 3, 16, 16)
    for _ in range(3):
        fxmaps.extract(graph, x, layers="conv")
    fxmaps.extract(graph, x, layers=["conv"])  # the same selection, written differently
    assert len(builds) == 1
    fxmaps.extract(graph, x, layers="conv", channels="top:2")
    assert len(builds) == 2


def test_feature_extractor_in_a_training_loop() -> None:
    model = toy.CifarResNet()
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model), ["layer3.0.bn2", "linear"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    maps = extractor(torch.randn(4, 3, 16, 16))
    loss = maps["linear"].pow(2).mean() + maps["layer3.0.bn2"].abs().mean()
    loss.backward()
    optimizer.step()
    assert model.linear.weight.grad is not None
    assert next(iter(extractor.parameters())) is next(model.parameters())


def _inplace() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))


_BUILDS: dict[str, tuple[Callable[[], nn.Module], torch.Tensor | None, Selection]] = {
    "symbolic": (toy.CifarResNet, None, ["layer1.0.bn1"]),
    "captured": (toy.RootDataDependent, torch.randn(1, 3, 8, 8), "conv"),
    "out of place": (_inplace, None, ["0", "2"]),  # the ReLU between runs as a copy
}


def _extractor(kind: str) -> tuple[nn.Module, fxmaps.FeatureExtractor]:
    build, example, layers = _BUILDS[kind]
    model = build()
    return model, fxmaps.FeatureExtractor(fxmaps.analyze(model, example), layers)


@pytest.mark.parametrize("kind", _BUILDS)
def test_feature_extractor_parameter_names_are_the_model_s(kind: str) -> None:
    model, extractor = _extractor(kind)
    keys = list(model.state_dict())
    assert [(n, id(p)) for n, p in extractor.named_parameters()] == [
        (n, id(p)) for n, p in model.named_parameters()
    ]
    assert [(n, id(b)) for n, b in extractor.named_buffers()] == [
        (n, id(b)) for n, b in model.named_buffers()
    ]
    assert list(extractor.state_dict()) == keys
    other = _BUILDS[kind][0]()
    result = extractor.load_state_dict(other.state_dict())  # strict: every key matches
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    for name, value in other.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name  # loaded into the model
    assert list(model.state_dict()) == keys  # nothing of the extractor's joined the model
    assert "graph_module" not in dict(model.named_modules())


def test_feature_extractor_modes_reach_the_layers_that_run() -> None:
    model, extractor = _extractor("out of place")
    assert extractor.out_of_place == ("1",)
    x = torch.randn(2, 3, 8, 8)
    for mode in (True, False):
        extractor.train(mode)
        assert all(m.training is mode for m in model.modules())
        assert all(m.training is mode for m in extractor.graph_module.modules())
    with torch.no_grad():
        torch.testing.assert_close(extractor(x)["0"], model.get_submodule("0")(x), rtol=0, atol=0)


def test_extract_needs_inputs() -> None:
    with pytest.raises(fxmaps.InputError, match=r"extract\(\) needs inputs") as excinfo:
        fxmaps.extract(toy.CifarResNet(), None)  # type: ignore[arg-type]
    assert (excinfo.value.argument, excinfo.value.got) == ("inputs", "None")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_extract_on_cuda_with_maps_moved_to_cpu() -> None:
    model = tv_model("resnet18").cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    maps = fxmaps.extract(model, x, layers=["bn1", "layer4.1.add"], device="cpu")
    assert all(t.device.type == "cpu" for t in maps.values())
    seen = hook_outputs(model, x)
    assert torch.equal(maps["bn1"], seen["bn1"][0].cpu())
    on_gpu = fxmaps.extract(model, x, layers=["bn1"])
    assert on_gpu["bn1"].is_cuda
    assert torch.equal(on_gpu["bn1"].cpu(), maps["bn1"])


def test_no_warnings_on_plain_models() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fxmaps.extract(toy.CifarResNet(), torch.randn(1, 3, 8, 8))
