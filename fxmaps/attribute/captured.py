"""Class activation maps on a captured model: the model runs the way it was captured.

A model that torch.fx cannot trace whole has no graph to cut at the node
(:mod:`.split`); it runs again as extraction runs it
(:class:`~fxmaps.extract.runner.CapturedExtraction`), with a swap at the node: the
run starts without autograd, and where the node's value is made it goes on with a
copy of a fresh leaf holding that value, with autograd on from there to the end. So
gradient methods backpropagate through what comes after the node only, as on a traced
graph, and the leaf keeps the value even when a later in-place op writes into what
the run goes on with. Score-CAM's masked inputs run through the model itself.
"""

from __future__ import annotations

from typing import Any

import torch

from fxmaps.attribute.gradients import Found, checked_value, explained
from fxmaps.attribute.image import MaskedRun, check_maskable, masked_inputs
from fxmaps.attribute.methods import GRADIENT_METHODS
from fxmaps.attribute.targets import Target
from fxmaps.errors import FxmapsError, InputError
from fxmaps.extract import cache
from fxmaps.extract.runner import CapturedExtraction
from fxmaps.extract.transforms import MapOptions
from fxmaps.facts import Source, facts
from fxmaps.graph import Layer, ModelGraph
from fxmaps.trace.inputs import Inputs, tensor_leaves

__all__ = ["captured_activations", "masked_run"]


class _Leaf:
    """The swap at the chosen node: keeps a fresh leaf holding the node's value, turns
    autograd on when it is to be differentiated, and gives the run a copy of it (an
    in-place op after the node writes into the copy, never into the leaf)."""

    def __init__(self) -> None:
        self.gradient = False
        self.made: list[Any] = []

    def __call__(self, layer: Layer, value: Any) -> Any:
        self.made.append(value)
        if not isinstance(value, torch.Tensor) or len(self.made) > 1:
            return value
        gradient = self.gradient and value.is_floating_point()
        leaf = value.detach().requires_grad_(gradient)
        self.made[0] = leaf
        if gradient:
            torch.set_grad_enabled(True)  # from here to the end of the run
        return leaf.clone()


def captured_activations(
    graph: ModelGraph,
    layer: Layer,
    given: Inputs,
    target: Target,
    image: torch.Tensor,
    method: str,
) -> Found:
    """Activations at ``layer`` (and their gradients for a gradient method), the targets
    and their scores, from one run of the captured model on ``given``.

    Raises:
        InputError: ``layer`` is one of the model's parameters or constants (the run
            reads it, it does not make it), or gives no single tensor.
        FxmapsError: The run did not make ``layer`` (its input took another path).
    """
    _check_made(graph, layer)
    runner, swap = cache.cached(graph, ("cam-captured", layer.name), lambda: _runner(graph, layer))
    swap.gradient, swap.made = method in GRADIENT_METHODS, []
    try:
        with torch.no_grad():  # until the swap turns autograd on
            output = runner.run(given)
        made = list(swap.made)
    finally:
        swap.made = []  # keep no tensor of this run
    if not made:
        raise FxmapsError(
            f"the model did not make {layer.name!r} when it ran on these inputs: they take "
            "another path through its code than the inputs it was analysed with. Pass the "
            "model itself to fxmaps.cam, or a graph analysed with these inputs"
        )
    leaf = checked_value(layer, made[0])
    if leaf.requires_grad:
        _check_reaches(layer, output)
    return explained(layer, leaf, output, target, image, scored=method != "eigencam")


def masked_run(graph: ModelGraph, given: Inputs, image: torch.Tensor) -> MaskedRun:
    """Score-CAM's runs of the captured model: the masked images in ``image``'s place
    (wherever it sits in the inputs), every other tensor with its masked sample (see
    :func:`.image.masked_inputs`)."""
    check_maskable(given.tensors(), image)
    model = graph.model

    def run(masked: torch.Tensor, samples: torch.Tensor) -> Any:
        return masked_inputs(given, image, masked, samples).call(model)

    return run


def _runner(graph: ModelGraph, layer: Layer) -> tuple[CapturedExtraction, _Leaf]:
    swap = _Leaf()
    return CapturedExtraction(graph, [layer], MapOptions(), frozenset(), swap=swap), swap


def _check_made(graph: ModelGraph, layer: Layer) -> None:
    origin = facts(graph.fx_node(layer.name)).origin
    if origin is not None and origin.source is Source.CONSTANT:
        raise InputError(
            f"layer={layer.name!r} is a parameter or constant the model reads, not a value "
            "it computes; choose a node that one of its layers or ops makes",
            argument="layer",
            got=layer.name,
        )


def _check_reaches(layer: Layer, output: Any) -> None:
    """Refuse an output that does not depend on the node: no gradient can reach it."""
    if not any(t.requires_grad for t in tensor_leaves(output)):
        raise InputError(
            f"the model's output does not depend on layer={layer.name!r} through ops autograd "
            "can follow, so no gradient reaches it; choose a node on the way to the output, "
            "or method='eigencam'",
            argument="layer",
            got=layer.name,
        )
