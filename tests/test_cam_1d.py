"""``fxmaps.cam`` on 1-d inputs ``(N, C, L)`` (audio, sequences, signals), and Score-CAM on
models that take more inputs than the image.

pytorch-grad-cam refuses inputs that are not 2-d or 3-d images, so the oracle here is
the papers' formulas written out in the test, on activations and gradients taken with
forward hooks and autograd over the whole model; Score-CAM's oracle calls the model
once per channel, the way the paper describes it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fxmaps
from fxmaps.attribute.methods import METHODS
from tests.models import evidence_counter
from tests.oracles import hook_outputs

LENGTH = 48


class _Signal(nn.Module):
    """Two Conv1d stages, global pooling, a classifier: the last stage's ReLU is the
    last node of length above 1 before pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 8, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 12, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _setup() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return _Signal().eval(), torch.randn(3, 2, LENGTH)


def _hooked(
    model: nn.Module, module: str, inputs: tuple[torch.Tensor, ...], classes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The module's output ``A``, the gradient ``G`` of the classes' logits there (one
    backward pass through the whole model) and the logits."""
    seen: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        seen["A"] = out
        out.register_hook(lambda grad: seen.__setitem__("G", grad))  # type: ignore[no-untyped-call]

    handle = model.get_submodule(module).register_forward_hook(keep)
    try:
        out = model(*inputs)
        out[torch.arange(len(out)), classes].sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return seen["A"].detach(), seen["G"].detach(), out.detach()


def _eigen(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM: each position's centred channel vector on the first right singular
    vector (NumPy's SVD), signed to correlate with the channel sum."""
    maps = []
    for sample in activations.double().numpy():
        rows = sample.T - sample.T.mean(axis=0)
        projection = rows @ np.linalg.svd(rows, full_matrices=False)[2][0]
        if np.corrcoef(projection, sample.sum(axis=0))[0, 1] < 0:
            projection = -projection
        maps.append(projection)
    return torch.tensor(np.stack(maps), dtype=torch.float32)


def _channel_scores(
    run: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    activations: torch.Tensor,
    classes: list[int],
) -> torch.Tensor:
    """Score-CAM's weights, one model call per sample and channel: the input times the
    channel upsampled (linear or bilinear, corners aligned) and min-max scaled."""
    weights = torch.empty(activations.shape[:2])
    mode = "linear" if x.dim() == 3 else "bilinear"
    with torch.no_grad():
        for n in range(len(x)):
            for c in range(activations.shape[1]):
                up = F.interpolate(
                    activations[n : n + 1, c : c + 1], size=x.shape[2:], mode=mode,
                    align_corners=True,
                )[0, 0]  # fmt: skip
                mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
                weights[n, c] = run(x[n : n + 1] * mask, n)[0, classes[n]]
    return torch.softmax(weights, dim=1)


def _paper(
    method: str,
    activations: torch.Tensor,
    gradients: torch.Tensor,
    score: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """``(N, l)`` maps after the ReLU, by each paper's formula on ``(N, C, l)`` values."""
    a, g = activations, gradients
    if method == "gradcam":
        weights = g.mean(dim=2)
    elif method == "gradcam++":
        alpha = g**2 / (2 * g**2 + a.sum(dim=2, keepdim=True) * g**3 + 1e-6)
        weights = (g.clamp(min=0) * torch.where(g != 0, alpha, 0)).sum(dim=2)
    elif method == "xgradcam":
        weights = (g * a / (a.sum(dim=2, keepdim=True) + 1e-7)).sum(dim=2)
    elif method == "layercam":
        return (g.clamp(min=0) * a).sum(dim=1).clamp(min=0)
    elif method == "eigencam":
        return _eigen(a).clamp(min=0)
    else:
        weights = score()
    return (weights[:, :, None] * a).sum(dim=1).clamp(min=0)


def _unused() -> torch.Tensor:
    raise AssertionError("only Score-CAM runs the model per channel")


def _scaled(raw: torch.Tensor, length: int) -> torch.Tensor:
    """Linear interpolation to ``length`` (half-pixel centres, as pytorch-grad-cam
    resizes its 2-d maps), min-max scaled per sample."""
    up = F.interpolate(raw[:, None], size=length, mode="linear", align_corners=False)[:, 0]
    low, high = up.amin(dim=1, keepdim=True), up.amax(dim=1, keepdim=True)
    return (up - low) / (high - low).clamp(min=torch.finfo(up.dtype).tiny)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_equals_its_formula_on_hooks_and_autograd(method: str) -> None:
    model, x = _setup()
    classes = [1, 3, 4]
    result = fxmaps.cam(model, x, classes, method=method)
    assert result.layer == "features.4"
    a, g, out = _hooked(model, "features.4", (x,), classes)
    run = lambda masked, _n: model(masked)  # noqa: E731
    expected = _paper(method, a, g, lambda: _channel_scores(run, x, a, classes))
    assert bool((expected.amax(dim=1) > 0).all())  # no blank map compared with a blank one
    assert result.raw.shape == (3, LENGTH // 2)
    assert result.maps.shape == (3, LENGTH)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.maps, _scaled(expected, LENGTH), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.scores, out[torch.arange(3), classes])
    assert result.targets == tuple(classes)


def test_the_default_layer_is_what_the_last_stage_returns() -> None:
    model, x = _setup()
    graph = fxmaps.analyze(model, x)
    chosen = fxmaps.cam(graph, x, method="eigencam").layer
    ours = fxmaps.extract(graph, x, layers=[chosen])[chosen]
    assert torch.equal(ours, hook_outputs(model, x, names=["features"])["features"][0])
    assert chosen == fxmaps.attribute.default_layer(graph).name  # read from the graph alone


def test_an_explicit_layer_and_the_top_class() -> None:
    model, x = _setup()
    result = fxmaps.cam(model, x, layer="features.1")
    with torch.no_grad():
        top = model(x).argmax(dim=1).tolist()
    assert list(result.targets) == top
    a, g, _ = _hooked(model, "features.1", (x,), top)
    torch.testing.assert_close(result.raw, _paper("gradcam", a, g, _unused), rtol=1e-4, atol=1e-5)
    assert result.maps.shape == (3, LENGTH)


class _Tokens(nn.Module):
    """A Conv1d stem, then channels-last tokens ``(N, l, C)`` through a linear layer: a
    sequence of tokens, not a grid, on a 1-d input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 6, 3, stride=2, padding=1)
        self.mix = nn.Linear(6, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.relu(self.mix(self.stem(x).transpose(1, 2)))
        return self.head(tokens.mean(dim=1))


def test_channels_last_tokens_of_a_signal_give_a_1d_map() -> None:
    torch.manual_seed(0)
    model, x = _Tokens().eval(), torch.randn(2, 2, 36)  # 18 tokens; 16 of them a square
    result = fxmaps.cam(model, x, [0, 2], layer="module:mix")
    a, g, _ = _hooked(model, "mix", (x,), [0, 2])
    expected = _paper("gradcam", a.transpose(1, 2), g.transpose(1, 2), _unused)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-5)
    assert result.maps.shape == (2, 36)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        ("pool", r"layer='pool' gives \(3, 12, 1\).*no sequence longer than 1"),
        ("fc", r"layer='fc' gives \(3, 5\).*no sequence longer than 1"),
    ],
)
def test_a_node_without_length_is_refused(layer: str, match: str) -> None:
    model, x = _setup()
    with pytest.raises(fxmaps.InputError, match=match):
        fxmaps.cam(model, x, layer=layer)


def test_a_signal_model_with_no_sequence_after_its_input_has_no_default_layer() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with pytest.raises(fxmaps.InputError, match=r"no layer with a length above 1.*\(N, C, L\)"):
        fxmaps.cam(mlp, torch.rand(2, 2, 4))


def _bumps(*starts: int) -> torch.Tensor:
    torch.manual_seed(0)
    signal = torch.rand(1, 1, 64) * 0.1
    for start in starts:
        signal[..., start : start + 6] = 1.0
    return signal


@pytest.mark.parametrize("method", METHODS)
def test_the_map_peaks_on_the_only_evidence(method: str) -> None:
    result = fxmaps.cam(evidence_counter(1, 1, None), _bumps(40), 0, method=method, layer="1")
    assert 40 <= int(result.maps[0].argmax()) < 46


@pytest.mark.parametrize(
    ("method", "layer"), [("layercam", "1"), ("gradcam", None), ("scorecam", None)]
)
def test_the_map_peaks_where_the_model_can_see(method: str, layer: str | None) -> None:
    """Two identical bumps; a gate lets only the second half reach the classifier. Before
    the gate only a per-position method can tell them apart (LayerCAM); after it
    (``layer=None`` chooses the gate's output) every method can."""
    model, signal = evidence_counter(1, 1, 32), _bumps(8, 44)
    result = fxmaps.cam(model, signal, 0, method=method, layer=layer)
    chosen = fxmaps.extract(model, signal, layers=[result.layer])[result.layer]
    gate = "1" if layer else "2"
    assert torch.equal(chosen, hook_outputs(model, signal, names=[gate])[gate][0])
    assert 44 <= int(result.maps[0].argmax()) < 50
    assert float(result.maps[0, 8:14].max()) == 0.0


# ------------------------------------------------------- Score-CAM with several inputs


class _WithContext(nn.Module):
    """An image (or signal) and a per-sample context ``(N, 4)`` that gates each
    channel, times a shared scale ``(4,)``. The conv's last channel is all zero, so
    its mask is blank (Score-CAM's all-zero input). The gate makes each channel's score
    depend on the context of its own sample, and not only by a constant per sample
    (which the softmax over channels would cancel)."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.conv = conv(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.gate = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 3)
        with torch.no_grad():
            self.conv.weight[5].zero_()
            assert self.conv.bias is not None
            self.conv.bias[5].zero_()

    def forward(self, x: torch.Tensor, context: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.relu(self.conv(x))).flatten(1)
        return self.fc(pooled * torch.sigmoid(4 * self.gate(context * scale)))


@pytest.mark.parametrize("shape", [(3, 3, 12, 10), (3, 3, 40)], ids=["image", "signal"])
def test_scorecam_masks_the_image_and_keeps_each_samples_other_inputs(
    shape: tuple[int, ...],
) -> None:
    torch.manual_seed(0)
    model = _WithContext(len(shape) - 2).eval()
    x, context, scale = torch.randn(shape), torch.randn(3, 4), torch.rand(4) + 0.5
    classes = [2, 0, 1]
    result = fxmaps.cam(model, (x, context, scale), classes, method="scorecam", batch_size=4)
    assert result.layer == "relu"
    a, _, _ = _hooked(model, "relu", (x, context, scale), classes)
    assert bool((a[:, 5] == 0).all())  # the blank mask is among them

    def run(masked: torch.Tensor, n: int) -> torch.Tensor:
        return model(masked, context[n : n + 1], scale)

    weights = _channel_scores(run, x, a, classes)
    expected = torch.einsum("nc,nc...->n...", weights, a).clamp(min=0)
    torch.testing.assert_close(result.raw, expected, rtol=1e-4, atol=1e-6)
    # the contexts matter: the same image with another sample's context scores otherwise
    swapped = fxmaps.cam(model, (x, context.flip(0), scale), classes, method="scorecam")
    assert not torch.allclose(swapped.raw, result.raw, atol=1e-4)


def test_scorecam_with_a_callable_target_and_several_inputs() -> None:
    torch.manual_seed(0)
    model = _WithContext(1).eval()
    x, context, scale = torch.randn(2, 3, 24), torch.randn(2, 4), torch.rand(4) + 0.5
    by_class = fxmaps.cam(model, (x, context, scale), 1, method="scorecam")
    by_callable = fxmaps.cam(model, (x, context, scale), lambda o: o[:, 1], method="scorecam")
    torch.testing.assert_close(by_callable.raw, by_class.raw)


def test_scorecam_needs_the_image_among_the_graphs_tensor_arguments() -> None:
    """An image that is no tensor argument of its own (inside a list or a dict) cannot be
    replaced by its masked copies; the runner says so instead of running something else."""
    from fxmaps.attribute.image import masked_runner

    model = _Signal().eval()
    graph = fxmaps.analyze(model, torch.randn(1, 2, LENGTH))
    image = torch.randn(1, 2, LENGTH)
    with pytest.raises(fxmaps.InputError, match=r"scorecam.*in a list or a dict"):
        masked_runner(graph.graph_module, [torch.randn(1, 2, LENGTH)], image)
