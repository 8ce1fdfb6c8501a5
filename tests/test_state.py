"""The model around a run: buffers are put back only where the run wrote to them.

The oracle is torch's own version counter (what autograd checks on backward) and the
buffers' values before the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fxmaps

X = torch.randn(2, 3, 8, 8)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    _running_mean(model).uniform_()  # statistics a trained model would have
    return model


def _running_mean(model: nn.Sequential) -> torch.Tensor:
    mean = cast(nn.BatchNorm2d, model[1]).running_mean
    assert mean is not None
    return mean


RUNS: dict[str, Callable[[nn.Module], object]] = {
    "analyze": lambda model: fxmaps.analyze(model, X),
    "extract": lambda model: fxmaps.extract(model, X, layers="conv"),
    "extract-graph": lambda model: fxmaps.extract(fxmaps.analyze(model, X), X, layers="conv"),
    "channel-stats": lambda model: fxmaps.channel_stats(
        model, TensorDataset(X), layers=["1"], topk=1, progress=False
    ),
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_a_users_graph_over_a_buffer_survives(run: Callable[[nn.Module], object]) -> None:
    model = _model()
    weight = torch.ones(4, requires_grad=True)
    loss = (_running_mean(model) * weight).sum()  # autograd saves running_mean for backward
    versions = [b._version for b in model.buffers()]
    run(model)
    assert [b._version for b in model.buffers()] == versions
    (grad,) = torch.autograd.grad(loss, [weight])  # "modified by an inplace operation"
    assert torch.equal(grad, _running_mean(model))  # if a buffer was written to


def test_a_buffer_written_in_training_mode_is_put_back() -> None:
    model = _model()
    before = {name: b.clone() for name, b in model.named_buffers()}
    graph = fxmaps.analyze(model, X, train=True)
    fxmaps.extract(graph, X, layers="conv")  # runs in training mode: BatchNorm updates
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert model[1].training is True  # a new model is in training mode, and stays so
