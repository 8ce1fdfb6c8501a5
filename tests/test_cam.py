"""``fxmaps.cam``: gradients against hooks and autograd over the whole model, the model left
as it was, targets, bad input, and sanity checks that can fail (a re-initialised
classifier changes the map; a model that can only see one region looks there)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxmaps
from fxmaps.attribute.methods import METHODS
from tests.conftest import tv_model
from tests.models import evidence_counter
from tests.oracles import assert_unchanged, correlation, hooked, snapshot


def _resnet() -> tuple[nn.Module, fxmaps.ModelGraph, torch.Tensor]:
    torch.manual_seed(0)
    model = tv_model("resnet18")
    x = torch.randn(2, 3, 96, 96)
    return model, fxmaps.analyze(model, x), x


def test_gradcam_equals_hooks_and_autograd_over_the_whole_model() -> None:
    model, graph, x = _resnet()
    result = fxmaps.cam(graph, x, [3, 7])
    assert result.layer == "layer4.1.relu_1"
    with hooked(model, ["layer4"]) as seen:
        grads: list[torch.Tensor] = []

        def keep_gradient(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            out.register_hook(grads.append)  # type: ignore[no-untyped-call]

        handle = model.get_submodule("layer4").register_forward_hook(keep_gradient)
        try:
            out = model(x)
            (out[0, 3] + out[1, 7]).backward()
        finally:
            handle.remove()
            model.zero_grad(set_to_none=True)
    activations = seen["layer4"][0]
    weights = grads[0].mean(dim=(2, 3))
    expected = torch.einsum("nc,nchw->nhw", weights, activations).clamp(min=0)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.scores, torch.stack([out[0, 3], out[1, 7]]).detach())
    assert result.targets == (3, 7)


def test_maps_are_min_max_scaled_at_the_input_size() -> None:
    _, graph, x = _resnet()
    result = fxmaps.cam(graph, x)
    assert result.maps.shape == (2, 96, 96)
    assert result.raw.shape == (2, 3, 3)
    for i in range(2):
        assert float(result.maps[i].min()) == 0.0
        assert float(result.maps[i].max()) == 1.0
        assert correlation(result.maps[i][16::32, 16::32], result.raw[i]) > 0.99  # cell centres


@pytest.mark.parametrize("method", METHODS)
def test_the_model_is_left_as_it_was(method: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).train()
    model[0].bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    before = snapshot(model)
    result = fxmaps.cam(model, torch.randn(2, 3, 12, 12), method=method)
    assert result.layer == "4"
    assert_unchanged(model, before)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_a_callable_target_gives_what_a_class_target_gives() -> None:
    _, graph, x = _resnet()
    by_class = fxmaps.cam(graph, x, 5, method="gradcam++")
    by_callable = fxmaps.cam(graph, x, lambda out: out[:, 5], method="gradcam++")
    torch.testing.assert_close(by_callable.raw, by_class.raw)
    assert by_callable.targets == (None, None)
    assert by_class.targets == (5, 5)


def test_top_class_by_default() -> None:
    model, graph, x = _resnet()
    with torch.no_grad():
        top = model(x).argmax(dim=1).tolist()
    assert list(fxmaps.cam(graph, x).targets) == top


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "gradcamm"}, r"method='gradcamm'.*'gradcam'"),
        ({"layer": "layer4.1.relu_2"}, r"layer='layer4.1.relu_2'.*'layer4.1.relu_1'"),
        ({"layer": "avgpool"}, r"layer='avgpool'.*no spatial grid.*before global pooling"),
        ({"target": 1000}, r"target=1000 is out of range.*0..999"),
        ({"target": [1, 2, 3]}, r"3 classes for 2 samples"),
        ({"target": lambda out: out}, r"returned \(2, 1000\).*one score per sample"),
    ],
)
def test_bad_input_names_the_value_and_the_fix(kwargs: dict[str, object], match: str) -> None:
    _, graph, x = _resnet()
    with pytest.raises(fxmaps.InputError, match=match):
        fxmaps.cam(graph, x, **kwargs)  # type: ignore[arg-type]


def test_a_model_whose_only_grid_is_its_input_has_no_default_layer() -> None:
    # The input is no layer's map: cam() says so instead of explaining the pixels.
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with pytest.raises(fxmaps.InputError, match=r"no layer with a spatial layout.*after its input"):
        fxmaps.cam(mlp, torch.rand(1, 3, 2, 2))


def test_reinitialising_the_classifier_changes_the_map() -> None:
    """Model randomisation (Adebayo et al. 2018): a map that survives a new classifier
    does not depend on what the model learned for the class."""
    model, graph, x = _resnet()
    before = fxmaps.cam(graph, x, 3)
    torch.manual_seed(1)
    fc = model.get_submodule("fc")
    assert isinstance(fc, nn.Linear)
    fc.reset_parameters()
    after = fxmaps.cam(graph, x, 3)
    for i in range(2):
        assert correlation(before.maps[i], after.maps[i]) < 0.5


def _image(*spots: tuple[int, int]) -> torch.Tensor:
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32) * 0.1
    for row, col in spots:
        image[..., row : row + 6, col : col + 6] = 1.0
    return image


def _peak(result: fxmaps.CamResult) -> tuple[int, int]:
    flat = int(result.maps[0].argmax())
    return divmod(flat, result.maps.shape[-1])


@pytest.mark.parametrize("method", METHODS)
def test_the_map_peaks_on_the_only_evidence(method: str) -> None:
    model = evidence_counter(2, 3, None)
    result = fxmaps.cam(model, _image((20, 4)), 0, method=method, layer="1")
    row, col = _peak(result)
    assert 20 <= row < 26
    assert 4 <= col < 10


def test_the_map_peaks_where_the_model_can_see() -> None:
    """Two identical spots; a gate lets only the right half reach the classifier."""
    model = evidence_counter(2, 3, 16)
    result = fxmaps.cam(model, _image((4, 4), (20, 22)), 0, method="layercam", layer="1")
    row, col = _peak(result)
    assert 20 <= row < 26
    assert 22 <= col < 28
    unseen = result.maps[0, 4:10, 4:10]
    assert float(unseen.max()) == 0.0
