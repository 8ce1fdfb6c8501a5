"""TraceError names the cause it found, with the advice that fits that cause only.

The oracle for each piece of advice is the advice itself: following it makes the
model work (an example input, ``functools.wraps``), checked against forward hooks.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
import torch
from torch import nn

import fxmaps
from tests import models as toy
from tests.oracles import hooked

_ADVICE = (
    "functools.wraps",
    "by name",
    "([image1, image2],)",
    "module-level helper",
    "torch.where",
)
"""One phrase of each cause's advice: a message holds its own and none of the others."""

_CASES: list[tuple[type[nn.Module], str, str, str]] = [
    # model, TraceError.reason, what the message says was found, its advice
    (
        toy.WrappedForward,
        "wrapped forward",
        r"WrappedForward.forward is replaced by a decorator's wrapper \(passing_on.<locals>"
        r".wrapper\) that takes \(\*args, \*\*kwargs\)",
        "functools.wraps",
    ),
    (
        toy.VariadicForward,
        "variadic forward",
        r"VariadicForward.forward takes only \*args and \*\*kwargs",
        "by name",
    ),
    (
        toy.ExtraArguments,
        "extra arguments",
        r"ExtraArguments.forward\(x, \*args, \*\*kwargs\) passes on its extra arguments",
        "",
    ),
    (
        toy.ListInput,
        "list input",
        r"ListInput.forward iterates over its argument 'images'",
        "([image1, image2],)",
    ),
    (
        toy.SizeLoop,
        "control flow on sizes",
        r"loops over or counts with a tensor's size",
        "module-level helper",
    ),
    (
        toy.SizeBranch,
        "control flow on sizes",
        r"branches on a tensor's size",
        "module-level helper",
    ),
    (
        toy.RootDataDependent,
        "data-dependent control flow",
        r"branches on a value computed from the tensors' data",
        "torch.where",
    ),
]


@pytest.mark.parametrize(("model_type", "reason", "found", "advice"), _CASES)
def test_the_error_names_the_cause_and_its_advice_only(
    model_type: type[nn.Module], reason: str, found: str, advice: str
) -> None:
    with pytest.raises(fxmaps.TraceError, match=found) as info:
        fxmaps.analyze(model_type())
    message = str(info.value)
    assert info.value.reason == reason
    assert info.value.module == ""  # the model's own code
    assert "pass an example input" in message.lower()  # what fits every cause
    for phrase in _ADVICE:
        assert (phrase in message) == (phrase == advice), phrase
    data_dependent = reason == "data-dependent control flow"
    assert ("leaf_modules" in message) == data_dependent
    assert ("autowrap_functions" in message) == data_dependent


@pytest.mark.parametrize(("model_type", "reason", "found", "advice"), _CASES)
def test_the_feature_extractor_of_a_model_gives_the_same_error(
    model_type: type[nn.Module], reason: str, found: str, advice: str
) -> None:
    with pytest.raises(fxmaps.TraceError, match=found) as info:
        fxmaps.FeatureExtractor(model_type(), "conv")
    assert info.value.reason == reason


def _inputs(model: nn.Module) -> Any:
    x = torch.randn(2, 3, 10, 10)
    return ([x[:1], x[1:]],) if isinstance(model, toy.ListInput) else x


@pytest.mark.parametrize("model_type", [case[0] for case in _CASES])
def test_an_example_input_makes_every_one_work(model_type: type[nn.Module]) -> None:
    """The advice every message gives: with an example input the maps are the model's."""
    model = model_type().eval()
    inputs = _inputs(model)
    graph = fxmaps.analyze(model, inputs)
    maps = fxmaps.extract(graph, inputs, layers="conv")
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with hooked(model, convs) as seen, torch.no_grad():
        model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    assert [maps.layer(name).target for name in maps] == [convs[0]] * len(seen[convs[0]])
    for name, expected in zip(maps, seen[convs[0]], strict=True):
        torch.testing.assert_close(maps[name], expected, rtol=0, atol=0)


def _keeping_signature(forward: Any) -> Any:
    @functools.wraps(forward)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return forward(self, *args, **kwargs)

    return wrapper


def test_functools_wraps_makes_a_wrapped_forward_traceable() -> None:
    """The advice for a wrapped forward: with functools.wraps it traces without an input."""

    class Kept(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        @_keeping_signature
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    graph = fxmaps.analyze(Kept())
    assert [layer.name for layer in graph.layers("conv")] == ["conv"]
    assert not graph.eager
    assert not graph.opaque


def test_a_helper_function_makes_size_control_flow_traceable() -> None:
    """The advice for control flow on sizes: the same loop in a helper function traces."""
    graph = fxmaps.analyze(_SizeLoopInHelper())
    assert [layer.name for layer in graph.layers("conv")] == ["conv"]
    x = torch.randn(1, 3, 8, 8)
    model = _SizeLoopInHelper().eval()
    torch.testing.assert_close(fxmaps.analyze(model).graph_module(x), model(x), rtol=0, atol=0)


def halve_per_channel(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    for _ in range(x.shape[1]):
        y = y * 0.5
    return y


class _SizeLoopInHelper(toy.SizeLoop):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return halve_per_channel(self.conv(x), x)


def test_a_cause_found_inside_a_caught_error_is_not_blamed() -> None:
    """A failed use the model's own code catches is not the cause of a later failure."""

    class Caught(toy.RootDataDependent):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                n = len(x)  # fails while tracing, and the model falls back
            except RuntimeError:
                n = 1
            return super().forward(x) * n

    with pytest.raises(fxmaps.TraceError, match=re.escape("if y.mean() > 0")) as info:
        fxmaps.analyze(Caught())
    assert info.value.reason == "data-dependent control flow"
