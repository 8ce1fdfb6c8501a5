"""``fxmaps.cam`` on models torch.fx cannot trace whole (captured): every method, at leaves,
in traced regions, at ops of Python code and at a part of what an op made, against plain
autograd over the whole model (a forward hook, or the model's own ``tap``, swaps in a leaf)
and against pytorch-grad-cam on the same module; the model left as it was."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import fxmaps
from fxmaps.attribute.methods import GRADIENT_METHODS, METHODS, eigen
from fxmaps.errors import FxmapsError
from tests.models import ChunkClassifier, GatedClassifier, ListClassifier, WrappedClassifier
from tests.oracles import assert_unchanged, correlation, grad_cam_maps, snapshot
from tests.zoo.any_model import CORPUS, AnyModel

Built = tuple[nn.Module, fxmaps.Inputs]


def _gated() -> Built:
    torch.manual_seed(0)
    return GatedClassifier().eval(), fxmaps.Inputs((torch.randn(2, 3, 32, 32),))


def _wrapped() -> Built:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    return WrappedClassifier().eval(), fxmaps.Inputs(kwargs={"image": x, "scale": 0.5})


def _listed() -> Built:
    torch.manual_seed(0)
    images, masks = torch.randn(2, 3, 16, 16), torch.randn(2, 1, 16, 16)
    return ListClassifier().eval(), fxmaps.Inputs(([images, masks],))


def _chunked() -> Built:
    torch.manual_seed(0)
    return ChunkClassifier().eval(), fxmaps.Inputs((torch.randn(2, 3, 16, 16),))


@contextlib.contextmanager
def _leaf_at(model: nn.Module, where: str) -> Iterator[list[torch.Tensor]]:
    """Plain autograd's own cut: the value at ``where`` (a module's output; ``"path:tap"``:
    what the ``tap`` of the module at ``path`` is given; ``"path:input"``: its first
    argument) replaced by a copy of a fresh leaf, which the list holds."""
    leaves: list[torch.Tensor] = []

    def swap(value: torch.Tensor) -> torch.Tensor:
        leaves.append(value.detach().requires_grad_(True))
        return leaves[-1].clone()

    path, _, tap = where.partition(":")
    owner = model.get_submodule(path)
    if tap == "input":  # the module's first positional argument
        handle = owner.register_forward_pre_hook(lambda _m, args: (swap(args[0]), *args[1:]))
        try:
            yield leaves
        finally:
            handle.remove()
        return
    if tap:
        vars(owner)["tap"] = swap  # an instance attribute over the class's identity
        try:
            yield leaves
        finally:
            del vars(owner)["tap"]
        return
    handle = owner.register_forward_hook(lambda _m, _i, out: swap(out))
    try:
        yield leaves
    finally:
        handle.remove()


def _autograd(
    model: nn.Module, inputs: fxmaps.Inputs, where: str, classes: tuple[int | None, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The value at ``where`` and the gradient there of the classes' logits, by autograd
    over the whole model."""
    with _leaf_at(model, where) as leaves:
        out = inputs.call(model)
        rows = torch.arange(len(classes))
        score = out[rows, torch.tensor([c or 0 for c in classes])].sum()
        (grad,) = torch.autograd.grad(score, leaves[0])
    return leaves[0].detach(), grad


# the node, and where plain autograd finds its value
CUTS: dict[str, tuple[Callable[[], Built], str | None, str]] = {
    "gated-default-root-op": (_gated, None, ":tap"),
    "gated-input": (_gated, "x", ":input"),
    "gated-leaf-in-python": (_gated, "gate", "gate"),
    "gated-region-module-output": (_gated, "module:features.1", "features.1"),
    "gated-region-function-call-written-in-place": (_gated, "features.0.gelu", "features.0:tap"),
    "keyword-wrapper-leaf": (_wrapped, "conv", "conv"),
    "list-input-leaf": (_listed, "mask_conv", "mask_conv"),
    "chunk-part": (_chunked, "chunk.getitem", ":tap"),
}


@pytest.mark.parametrize("method", [*GRADIENT_METHODS, "eigencam"])
@pytest.mark.parametrize("cut", list(CUTS))
def test_maps_equal_autograd_over_the_whole_model(cut: str, method: str) -> None:
    build, layer, where = CUTS[cut]
    model, inputs = build()
    graph = fxmaps.analyze(model, inputs)
    assert graph.capture is not None, "the model must be one torch.fx cannot trace whole"
    result = fxmaps.cam(graph, inputs, method=method, layer=layer)
    activations, grads = _autograd(model, inputs, where, result.targets)
    if method == "eigencam":
        expected = eigen(activations).clamp(min=0)
    else:
        expected = GRADIENT_METHODS[method](activations, grads).clamp(min=0)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-5)
    assert float(expected.amax()) > 0, "a blank map compares nothing"
    with torch.no_grad():
        logits = inputs.call(model)
    torch.testing.assert_close(result.scores, logits[torch.arange(2), list(result.targets)])


def test_the_default_node_of_a_captured_graph_is_its_last_grid() -> None:
    model, inputs = _gated()
    graph = fxmaps.analyze(model, inputs)
    chosen = fxmaps.cam(graph, inputs, method="eigencam").layer
    with _leaf_at(model, ":tap") as leaves, torch.no_grad():
        inputs.call(model)
    assert torch.equal(fxmaps.extract(graph, inputs, layers=[chosen])[chosen], leaves[0])


BLANK = {("gate", "scorecam")}
"""``gate`` is a conv before any ReLU: with these weights, Score-CAM's softmax-weighted mean of
its channels is negative everywhere, and both maps are blank."""


@pytest.mark.parametrize("method", [m for m in METHODS if m != "eigencam"])
@pytest.mark.parametrize("module", ["gate", "features.1"])
def test_maps_match_pytorch_grad_cam_on_the_same_module(module: str, method: str) -> None:
    pytest.importorskip("pytorch_grad_cam", reason="the oracle is pytorch-grad-cam (grad-cam)")
    model, inputs = _gated()
    (x,) = inputs.args
    result = fxmaps.cam(model, x, [1, 3], method=method, layer=f"module:{module}")
    expected = grad_cam_maps(model, module, x, [1, 3], method)
    if (module, method) in BLANK:
        assert float(result.raw.abs().max()) == 0.0
        assert float(abs(expected).max()) == 0.0
        return
    assert bool((result.raw.flatten(1).amax(dim=1) > 0).all()), "a blank map compares nothing"
    floor = 0.95 if method == "scorecam" else 0.99
    for i in range(2):
        assert correlation(result.maps[i], expected[i]) > floor, (module, method, i)


def test_scorecam_masks_the_image_the_model_takes_as_a_keyword() -> None:
    pytest.importorskip("pytorch_grad_cam", reason="the oracle is pytorch-grad-cam (grad-cam)")
    model, inputs = _wrapped()
    result = fxmaps.cam(model, inputs, [0, 2], method="scorecam", layer="conv")

    class Positional(nn.Module):  # the same model for pytorch-grad-cam, which passes x alone
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> Any:
            return self.inner(image=x, scale=0.5)

    expected = grad_cam_maps(Positional(), "inner.conv", inputs.kwargs["image"], [0, 2], "scorecam")
    for i in range(2):
        assert correlation(result.maps[i], expected[i]) > 0.95


@pytest.mark.parametrize("method", METHODS)
def test_the_model_is_left_as_it_was(method: str) -> None:
    model, inputs = _gated()
    model.train()
    model.gate.bias.requires_grad_(False)  # type: ignore[union-attr]
    flags = [p.requires_grad for p in model.parameters()]
    before = snapshot(model)
    result = fxmaps.cam(model, inputs, method=method)
    assert result.layer == "add"
    assert_unchanged(model, before)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


def test_autograd_is_off_again_after_a_call_made_without_it() -> None:
    model, inputs = _gated()
    expected = fxmaps.cam(model, inputs, 2)
    with torch.no_grad():
        found = fxmaps.cam(model, inputs, 2)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(found.raw, expected.raw)


class _Branch(nn.Module):
    """``pos`` or ``neg`` after the stem, by the sign of the stem's mean."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.pos = nn.Conv2d(4, 4, 1)
        self.neg = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = self.pos(y) if y.mean() > 0 else self.neg(y)
        return self.fc(y.mean((2, 3)))


def test_a_node_the_run_does_not_make_is_refused() -> None:
    torch.manual_seed(0)
    model = _Branch().eval()
    with torch.no_grad():
        model.stem.bias.fill_(5.0)  # type: ignore[union-attr]
    graph = fxmaps.analyze(model, torch.ones(1, 3, 8, 8))
    assert graph.capture is not None
    assert "pos" in [layer.name for layer in graph.layers()]
    with torch.no_grad():
        model.stem.bias.fill_(-5.0)  # type: ignore[union-attr]
    with pytest.raises(FxmapsError, match="did not make 'pos'"):
        fxmaps.cam(graph, torch.ones(1, 3, 8, 8), 0, layer="pos")


def _tiny_transformers_vit() -> tuple[nn.Module, fxmaps.Inputs]:
    """transformers' ViT classifier (random weights): 4x4 patches of 8 pixels, 5 classes."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=5,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ViTForImageClassification(config).eval()
    return model, fxmaps.Inputs(kwargs={"pixel_values": torch.randn(2, 3, 32, 32)})


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers")
def test_a_transformers_vit_gets_the_tokens_entering_the_last_attention() -> None:
    model, inputs = _tiny_transformers_vit()
    graph = fxmaps.analyze(model, inputs)
    assert graph.capture is not None
    classes = [1, 4]

    def target(out: Any) -> torch.Tensor:
        return out.logits[torch.arange(2), classes]

    result = fxmaps.cam(graph, inputs, target)
    with _leaf_at(model, "vit.layers.0") as leaves:
        score = target(inputs.call(model)).sum()
        (grad,) = torch.autograd.grad(score, leaves[0])
    chosen = fxmaps.extract(graph, inputs, layers=[result.layer])[result.layer]
    assert torch.equal(chosen, leaves[0])  # the last block's input: the first block's output

    def grid(tokens: torch.Tensor) -> torch.Tensor:  # class token dropped, 4x4 patches
        return tokens[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2)

    expected = GRADIENT_METHODS["gradcam"](grid(leaves[0].detach()), grid(grad)).clamp(min=0)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-5)
    assert bool((result.raw.flatten(1).amax(dim=1) > 0).all())  # not the blank last block


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers")
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_class_targets_read_a_transformers_output_s_logits(method: str) -> None:
    model, inputs = _tiny_transformers_vit()
    graph = fxmaps.analyze(model, inputs)
    by_class = fxmaps.cam(graph, inputs, 3, method=method)
    by_callable = fxmaps.cam(graph, inputs, lambda out: out.logits[:, 3], method=method)
    torch.testing.assert_close(by_class.raw, by_callable.raw)
    torch.testing.assert_close(by_class.scores, by_callable.scores)
    assert by_class.targets == (3, 3)
    if method == "scorecam":  # one score per masked row, not one per sample
        with pytest.raises(fxmaps.InputError, match=r"gave 2 scores for a batch of \d+ masked"):
            fxmaps.cam(graph, inputs, lambda out: out.logits[[0, 1], [1, 4]], method=method)
    with torch.no_grad():
        top = inputs.call(model).logits.argmax(dim=1).tolist()
    assert list(fxmaps.cam(graph, inputs, method=method).targets) == top


class _WithAuxiliary(nn.Module):
    """A classifier returning ``(logits, auxiliary logits)``, as inception does in training."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
        self.aux = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.features(x)
        return self.head(y), self.aux(y)


def test_a_class_target_reads_the_first_of_a_tuple_output() -> None:
    torch.manual_seed(0)
    model, x = _WithAuxiliary().eval(), torch.randn(2, 3, 8, 8)
    by_class = fxmaps.cam(model, x, 2, layer="features.1")
    by_callable = fxmaps.cam(model, x, lambda out: out[0][:, 2], layer="features.1")
    torch.testing.assert_close(by_class.raw, by_callable.raw)
    with pytest.raises(fxmaps.InputError, match=r"target=9 is out of range.*4 classes"):
        fxmaps.cam(model, x, 9, layer="features.1")


@pytest.mark.parametrize(("method", "after"), [("gradcam", True), ("eigencam", False)])
def test_autograd_is_on_only_after_the_node(method: str, after: bool) -> None:
    model, inputs = _gated()
    graph = fxmaps.analyze(model, inputs)  # its runs are not the ones looked at
    seen: dict[str, bool] = {}

    def note(path: str) -> Callable[..., None]:
        def hook(*_: object) -> None:
            seen.setdefault(path, torch.is_grad_enabled())

        return hook

    paths = ("features.1.conv", "gate", "fc")
    handles = [model.get_submodule(p).register_forward_pre_hook(note(p)) for p in paths]
    try:
        fxmaps.cam(graph, inputs, method=method, layer="gate")
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {"features.1.conv": False, "gate": False, "fc": after}


@pytest.mark.zoo
def test_an_optical_flow_model_explains_a_callable_target() -> None:
    import torchvision

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    first, second = (torch.rand(1, 3, 128, 128, generator=generator) for _ in range(2))
    model = torchvision.models.optical_flow.raft_small(weights=None).eval()
    inputs = fxmaps.Inputs((first, second), {"num_flow_updates": 3})

    def target(flows: list[torch.Tensor]) -> torch.Tensor:  # the last flow's mean square
        return flows[-1].pow(2).mean((1, 2, 3))

    result = fxmaps.cam(model, inputs, target, layer="module:context_encoder")
    with _leaf_at(model, "context_encoder") as leaves:
        (grad,) = torch.autograd.grad(target(inputs.call(model)).sum(), leaves[0])
    expected = GRADIENT_METHODS["gradcam"](leaves[0].detach(), grad).clamp(min=0)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-6)
    assert float(expected.amax()) > 0


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a model's output (a tensor, a record, a dict, a list)."""
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "to_tuple"):  # transformers' output records
        value = value.to_tuple()
    items = value.values() if isinstance(value, dict) else value
    for item in items if isinstance(items, (list, tuple, type({}.values()))) else ():
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def _mean_of_first(output: Any) -> torch.Tensor:
    """One score per sample for any model: the mean of its first output tensor."""
    first = _first_tensor(output)
    assert first is not None
    return first.float().flatten(1).mean(dim=1)


# entries that take an image batch and have a default node: not text, audio or video, not
# detection (a list of images), not CLIP (classify/ does not lay its tokens out as tokens),
# not RAFT (no node on its main path has a grid)
_NO_DEFAULT = {"bert", "gpt2", "t5_encoder", "wav2vec2", "llama", "clip_vision", "lstm_classifier"}
_IMAGES = [
    e
    for e in CORPUS
    if e.family in ("transformers", "diffusers", "segmentation", "student")
    and e.name not in _NO_DEFAULT
]


@pytest.mark.zoo
@pytest.mark.parametrize("entry", [pytest.param(e, id=e.name) for e in _IMAGES])
def test_the_any_model_corpus_default_node(entry: AnyModel) -> None:
    if entry.requires is not None and importlib.util.find_spec(entry.requires) is None:
        pytest.skip(f"{entry.requires} is a test extra: pip install fxmaps[test]")
    model, inputs = entry.build()
    graph = fxmaps.analyze(model, inputs)
    eigencam = fxmaps.cam(graph, inputs, _mean_of_first, method="eigencam")
    spatial = fxmaps.extract(graph, inputs, layers=[eigencam.layer], spatial=True)
    torch.testing.assert_close(eigencam.raw, eigen(spatial[eigencam.layer]).clamp(min=0))
    gradcam = fxmaps.cam(graph, inputs, _mean_of_first)
    assert gradcam.layer == eigencam.layer
    assert gradcam.raw.shape == eigencam.raw.shape
    assert bool(torch.isfinite(gradcam.raw).all())


@pytest.mark.parametrize("layer", ["gate", "features.0.gelu", "x"])
def test_nothing_of_a_call_is_kept_after_it(layer: str) -> None:
    model, inputs = _gated()
    graph = fxmaps.analyze(model, inputs)
    x = torch.randn(2, 3, 32, 32)
    fxmaps.cam(graph, x, layer=layer)
    fxmaps.cam(graph, x, layer=layer, method="eigencam")
    gone = weakref.ref(x)
    del x
    gc.collect()
    assert gone() is None


def _detector() -> tuple[nn.Module, list[torch.Tensor]]:
    """torchvision's small Faster R-CNN with random weights, keeping every box (a score
    threshold of 0), and two images of one size as a detector takes them: a list."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0
    )
    return model.eval(), [torch.rand(3, 160, 200), torch.rand(3, 160, 200)]


def _top_box(out: Any) -> torch.Tensor:
    """Each image's best box score."""
    return torch.stack([found["scores"][0] for found in out])


def test_a_detector_s_list_of_images_is_the_batch_the_maps_are_drawn_on() -> None:
    model, images = _detector()
    graph = fxmaps.analyze(model, (images,))
    result = fxmaps.cam(graph, (images,), _top_box)
    assert result.maps.shape == (2, 160, 200)
    with _leaf_at(model, result.layer) as leaves:
        score = _top_box(model(images)).sum()
        (grad,) = torch.autograd.grad(score, leaves[0])
    expected = GRADIENT_METHODS["gradcam"](leaves[0].detach(), grad).clamp(min=0)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-6)
    assert bool((result.raw.flatten(1).amax(dim=1) > 0).all())


def test_eigencam_needs_no_class_scores_and_scorecam_says_why_it_cannot_mask_a_list() -> None:
    model, images = _detector()
    graph = fxmaps.analyze(model, (images,))
    result = fxmaps.cam(graph, (images,), method="eigencam")
    value = fxmaps.extract(graph, (images,), layers=[result.layer])[result.layer]
    torch.testing.assert_close(result.raw, eigen(value).clamp(min=0))
    assert result.targets == (None, None)
    assert bool(result.scores.isnan().all())
    with pytest.raises(fxmaps.InputError, match=r"scorecam.*in a list or a dict.*eigencam"):
        fxmaps.cam(graph, (images,), _top_box, method="scorecam")
    with pytest.raises(fxmaps.InputError, match=r"differ: \[\(3, 160, 200\), \(3, 180, 200\)\]"):
        fxmaps.cam(graph, ([images[0], torch.rand(3, 180, 200)],), method="eigencam")
