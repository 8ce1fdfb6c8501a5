"""A too small input: the ShapeError says the smallest input that goes through, for
signals (1-D), images (2-D) and clips (3-D), traced or captured.

The oracle is the model itself: it runs at the size the message gives, and at no
smaller size of any group of sides (a clip's frames, its height and width).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

import fxmaps
from tests.oracles import runs, smallest_sides


class _SizeGated(nn.Module):
    """Control flow on a size in its own forward, so fxmaps captures it as it runs."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 1000:
            x = x[..., :1000]
        return self.body(x)


def _signal() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 4, 5), nn.MaxPool1d(3), nn.Conv1d(4, 4, 5), nn.ReLU())


def _image() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))


def _clip() -> nn.Module:
    return nn.Sequential(nn.Conv3d(2, 4, (1, 3, 3)), nn.MaxPool3d(2), nn.Conv3d(4, 4, 3))


def _video(build: Callable[..., nn.Module]) -> Callable[[], nn.Module]:
    def train() -> nn.Module:  # BatchNorm in training needs more than one value per channel
        torch.manual_seed(0)
        return build(weights=None).train()

    return train


# name: (model, too small an input, groups of sides found together, the layout's words)
_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], list[list[int]], str]] = {
    "conv1d": (_signal, (1, 2, 6), [[2]], "(length)"),
    "conv2d": (_image, (1, 3, 5, 9), [[2, 3]], "fxmaps.load_image"),
    "conv3d": (_clip, (1, 2, 3, 9, 9), [[2], [3, 4]], "(frames×height×width)"),
    "r3d_18": (_video(torchvision.models.video.r3d_18), (1, 3, 1, 8, 8), [[2], [3, 4]], "frames"),
    "mc3_18": (_video(torchvision.models.video.mc3_18), (1, 3, 1, 8, 8), [[2], [3, 4]], "frames"),
    "captured conv1d": (lambda: _SizeGated(_signal()), (1, 2, 6), [[2]], "(length)"),
    "captured conv3d": (lambda: _SizeGated(_clip()), (1, 2, 3, 9, 9), [[2], [3, 4]], "frames"),
}


def _needed(message: str) -> tuple[int, ...]:
    found = re.search(r"needs an input of at least ([\d×]+)", message)
    assert found is not None, message
    return tuple(int(side) for side in found.group(1).split("×"))


@pytest.mark.parametrize("case", _CASES.values(), ids=_CASES.keys())
def test_a_too_small_input_is_told_the_smallest_that_runs(
    case: tuple[Callable[[], nn.Module], tuple[int, ...], list[list[int]], str],
) -> None:
    build, shape, groups, words = case
    model = build()
    assert not runs(model, shape)  # the premise: it is too small
    train = model.training
    with pytest.raises(fxmaps.ShapeError, match="too small: the model needs an input of at least"):
        fxmaps.analyze(model, torch.zeros(shape), train=train)
    with pytest.raises(fxmaps.ShapeError) as info:
        fxmaps.analyze(model, torch.zeros(shape), train=train)
    message = str(info.value)
    assert words in message
    found = (*shape[:2], *_needed(message))
    assert runs(model, found)
    assert smallest_sides(model, shape, groups, found) == found
    if "captured" in str(case):
        assert "failed while it ran on the example input" in message


def test_extracting_from_a_too_small_input_says_so_too() -> None:
    """The same hint when a graph analysed on a larger input is given a small one."""
    model = _signal().eval()
    graph = fxmaps.analyze(model, torch.zeros(1, 2, 40))
    with pytest.raises(fxmaps.ShapeError, match=r"at least 19 \(length\)"):
        fxmaps.extract(graph, torch.zeros(1, 2, 6))
    assert runs(model, (1, 2, 19))
    assert not runs(model, (1, 2, 18))


def test_extracting_from_a_captured_model_on_a_too_small_input_says_so_too() -> None:
    model = _SizeGated(_clip()).eval()
    graph = fxmaps.analyze(model, torch.zeros(1, 2, 8, 16, 16))
    assert graph.capture is not None  # the premise: captured as it ran
    shape = (1, 2, 3, 9, 9)
    with pytest.raises(fxmaps.ShapeError, match=r"_SizeGated failed on the input") as info:
        fxmaps.extract(graph, torch.zeros(shape))
    found = (*shape[:2], *_needed(str(info.value)))
    assert runs(model, found)
    assert smallest_sides(model, shape, [[2], [3, 4]], found) == found


def test_a_batch_of_one_in_training_is_told_a_larger_batch_works_too() -> None:
    model = _video(torchvision.models.video.r3d_18)()
    with pytest.raises(fxmaps.ShapeError, match="or a batch of more than one sample"):
        fxmaps.analyze(model, torch.zeros(1, 3, 1, 8, 8), train=True)
    assert runs(model, (2, 3, 1, 8, 8))  # what the advice says


def test_a_conv1d_s_expected_input_is_a_length() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 5), nn.Conv1d(4, 4, 5))
    with pytest.raises(fxmaps.ShapeError, match=r"shape \(N, 4, L\), spatial size at least \(5,\)"):
        fxmaps.analyze(model, torch.zeros(1, 2, 6))


def test_the_model_is_left_as_it_was() -> None:
    model = _video(torchvision.models.video.mc3_18)()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(fxmaps.ShapeError):
        fxmaps.analyze(model, torch.zeros(1, 3, 1, 8, 8), train=True)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert model.training
