"""``fxmaps.cam``: class activation maps at any node, with no hand-picked layer and no
reshape.

The graph is cut at the node (:mod:`.split`). The part before it runs once without
autograd; gradient methods backpropagate through the part after it alone, with every
parameter's ``requires_grad`` off for the call (so no parameter gradient is computed
or left behind), and the model's modes, buffers and flags are put back afterwards.
A model torch.fx could not trace whole (captured) runs the way it was captured, with
autograd turned on where the node's value is made (:mod:`.captured`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fxmaps.attribute.captured import captured_activations, masked_run
from fxmaps.attribute.fold import folded
from fxmaps.attribute.gradients import Found, checked_value, explained
from fxmaps.attribute.image import MaskedRun, as_rows, find_image, masked_runner
from fxmaps.attribute.layer import default_layer, layer_named
from fxmaps.attribute.methods import GRADIENT_METHODS, METHODS, eigen, weighted
from fxmaps.attribute.result import CamResult
from fxmaps.attribute.score import score_weights
from fxmaps.attribute.split import Split, split_at
from fxmaps.attribute.targets import Target
from fxmaps.errors import FxmapsWarning, InputError, close_matches
from fxmaps.extract import cache
from fxmaps.extract.failures import checked_inputs
from fxmaps.graph import Layer, ModelGraph, analyze
from fxmaps.graph.checks import check_module
from fxmaps.trace.inputs import ExampleInput, Inputs, as_inputs
from fxmaps.trace.state import preserved_state
from fxmaps.trace.variants import graph_inputs

__all__ = ["cam"]


def cam(
    model_or_graph: nn.Module | ModelGraph,
    inputs: ExampleInput,
    target: Target = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 32,
) -> CamResult:
    """Where the model looks for its target: class activation maps at one node.

    Args:
        model_or_graph: A model (analysed with ``inputs`` first) or the
            :class:`ModelGraph` from ``fxmaps.analyze(model, example_input)``; a model
            torch.fx cannot trace whole (captured) works too, run as it was captured.
        inputs: A batch of images ``(N, C, H, W)`` or of signals ``(N, C, L)`` (audio,
            sequences), or a model's inputs whose first 4-d tensor (else a list of
            ``(C, H, W)`` images of one size, as detectors take them; else the first
            3-d tensor) is the image or signal the maps are drawn on.
        target: ``None`` (each sample's top class), a class index, a list of one per
            sample, or a callable from the model's output to one score per sample
            (a segmentation's class pixels, a detection score, an embedding similarity).
            Score-CAM calls it on batches of masked inputs, so it scores each row of
            the output on its own.
        method: ``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``, ``"layercam"``
            (gradient methods), ``"eigencam"`` (no gradient, no target) or
            ``"scorecam"`` (forward runs only).
        layer: A node name; ``None`` lets fxmaps choose the last node on the main path
            that still has a grid larger than 1x1, for a signal a length above 1 (see
            :mod:`fxmaps.attribute.layer`).
            Tokens ``(N, L, C)`` and channels-last grids become ``(N, C, H, W)`` as
            ``extract(spatial=True)`` makes them (class and register tokens dropped).
            For a signal, ``(N, C, l)`` values and tokens ``(N, l, C)`` give 1-d maps.
        batch_size: Masked inputs per forward run of Score-CAM. Score-CAM masks the
            image; the model's other inputs go with each masked sample (those whose
            first dimension is the batch size indexed by its sample, others as given).
            Score-CAM runs the whole model once per channel of the node and sample;
            under ``torch.autocast`` (bfloat16 on a CPU with AVX-512 BF16 or AMX) those
            runs take about half the time, and each score is then rounded by about
            ``|score| / 256``, which moves the channel weights (a softmax over the
            scores) where scores differ by less than that.

    Returns:
        A :class:`CamResult`: ``maps`` ``(N, H, W)`` in [0, 1] at the input's size
        (``(N, L)`` for signals), ``raw`` at the layer's size, the ``layer``,
        ``targets`` and ``scores``.

    Raises:
        InputError: An unknown method, a layer that is not a node or has no spatial
            grid, a target out of range, or inputs without an image.

    Example:
        >>> import torch, fxmaps
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        >>> result = fxmaps.cam(model, torch.randn(2, 3, 16, 16), target=1)
        >>> result.layer, tuple(result.maps.shape), result.targets
        ('1', (2, 16, 16), (1, 1))
    """
    _check_method(method)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(
            f"batch_size={batch_size!r} must be a whole number >= 1 (masked inputs per run)",
            argument="batch_size",
            got=repr(batch_size),
        )
    graph, given = _prepared(model_or_graph, inputs)
    image = find_image(given)
    dims = image.dim() - 2  # 2 for images, 1 for signals
    if layer is None:
        chosen = default_layer(graph, dims=dims)
    else:
        chosen = layer_named(graph, layer, dims=dims)
    with preserved_state(graph.model, train=graph.train), _frozen(graph.model):
        runner: MaskedRun | None = None
        if graph.capture is None:
            found, runner = _traced(graph, chosen, given, target, image, method)
        else:
            found = captured_activations(graph, chosen, given, target, image, method)
            if method == "scorecam":
                runner = masked_run(graph, given, image)
        _, _, targets, scores = found
        rows = as_rows(image)  # a signal as a grid of one row, as its maps are computed
        combined = _combined(runner, rows, method, found, batch_size)
    raw = combined.detach().float().clamp(min=0)
    maps = _scaled(raw, (int(rows.shape[-2]), int(rows.shape[-1])))
    if dims == 1:
        raw, maps = raw[:, 0], maps[:, 0]
    return CamResult(maps, raw, chosen.name, targets.classes, scores.detach(), method)


def _traced(
    graph: ModelGraph,
    layer: Layer,
    given: Inputs,
    target: Target,
    image: torch.Tensor,
    method: str,
) -> tuple[Found, MaskedRun | None]:
    """What :func:`_activations` finds on the traced graph cut at ``layer``, and for
    Score-CAM its masked runs (of a copy of the graph with each batch norm folded into
    the convolution before it: one pass over a map, not two)."""
    split: Split = cache.cached(graph, ("cam-split", layer.name), lambda: _split(graph, layer))
    tensors = graph_inputs(graph.model, given)
    runner = None
    if method == "scorecam":
        runner = masked_runner(folded(graph.graph_module), tensors, image)
    with torch.no_grad():
        value, *crossing = split.head(*tensors)
    return _activations(layer, split, value, crossing, target, image, method), runner


def _combined(
    runner: MaskedRun | None,
    image: torch.Tensor,
    method: str,
    found: Found,
    batch_size: int,
) -> torch.Tensor:
    """The method's map ``(N, h, w)`` before the ReLU (``h == 1`` for 1-d maps);
    ``runner`` runs Score-CAM's masked images through the whole model."""
    activations, gradients, targets, _ = found
    if method == "scorecam":
        assert runner is not None  # made for scorecam
        with torch.inference_mode():
            weights = score_weights(runner, image, activations, targets, batch_size)
        return weighted(activations, weights.to(activations.dtype))
    if method == "eigencam":
        return eigen(activations)
    assert gradients is not None  # gradient methods always have them
    return GRADIENT_METHODS[method](activations, gradients)


def _check_method(method: str) -> None:
    if method not in METHODS:
        close = close_matches(method, METHODS) or list(METHODS)
        raise InputError(
            f"method={method!r} is not a CAM method; use one of {', '.join(METHODS)}"
            f" (did you mean {', '.join(map(repr, close))}?)",
            argument="method",
            got=str(method),
        )


def _prepared(
    model_or_graph: nn.Module | ModelGraph, inputs: ExampleInput
) -> tuple[ModelGraph, Inputs]:
    """The graph (with shapes, analysed now if need be) and the checked inputs."""
    model = model_or_graph.model if isinstance(model_or_graph, ModelGraph) else model_or_graph
    model = check_module(model, "cam()")
    given = as_inputs(inputs, model, argument="inputs")
    if given is None:
        raise InputError(
            "cam() needs inputs: an image batch (N, C, H, W)", argument="inputs", got="None"
        )
    graph = model_or_graph if isinstance(model_or_graph, ModelGraph) else None
    if graph is None or graph.input_shapes is None:
        graph = analyze(model, given)
    given, notes = checked_inputs(graph, given)
    for note in notes:
        warnings.warn(note, FxmapsWarning, stacklevel=3)
    return graph, given


def _split(graph: ModelGraph, layer: Layer) -> Split:
    return split_at(graph.graph_module, graph.fx_node(layer.name))


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Every parameter's ``requires_grad`` off for the block, then as it was."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _activations(
    layer: Layer,
    split: Split,
    value: Any,
    crossing: list[Any],
    target: Target,
    image: torch.Tensor,
    method: str,
) -> Found:
    """``(N, C, H, W)`` activations (``(N, C, 1, l)`` for a signal ``image``), their
    gradients for a gradient method, the targets and their scores, from one run of the
    part after the node."""
    value = checked_value(layer, value)
    gradient = method in GRADIENT_METHODS and value.is_floating_point()
    leaf = value.detach().requires_grad_(gradient)
    with torch.set_grad_enabled(gradient):
        output = split.tail(leaf, *crossing)
    return explained(layer, leaf, output, target, image, scored=method != "eigencam")


def _scaled(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each map upsampled (bilinear) to ``size`` and scaled to [0, 1] on its own."""
    up = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = up.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = (high - low).clamp(min=torch.finfo(up.dtype).tiny)
    return ((up - low[:, None, None]) / span[:, None, None]).clamp(0, 1)
