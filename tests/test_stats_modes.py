"""channel_stats runs the eval-mode graph by default and never changes the model.

The oracle is the model itself, run by hand: forward hooks on ``model.eval()`` for the
eval-mode statistics, and a training-mode forward of the whole dataset as one batch
(on a copy) for ``train=True``; the model's state dict and every module's mode,
snapshot before the call, for "nothing changed".
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import fxmaps
from fxmaps.errors import OptionError
from fxmaps.stats.channels import channel_stats
from tests.models import batchnorm_cnn
from tests.test_stats import SIMPLE_CNN

LAYERS = ["0", "1", "4"]  # a conv, its BatchNorm, the last BatchNorm


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    state = {name: value.clone() for name, value in model.state_dict().items()}
    return state, [module.training for module in model.modules()]


def assert_unchanged(model: nn.Module, before: tuple[dict[str, torch.Tensor], list[bool]]) -> None:
    state, modes = before
    after = model.state_dict()
    assert after.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(after[name], value), f"{name} changed"
    assert [module.training for module in model.modules()] == modes


def hooked_maps(model: nn.Module, images: torch.Tensor, *, train: bool) -> dict[str, torch.Tensor]:
    """What each of LAYERS outputs on all images in one batch, by forward hooks on a copy."""
    twin = copy.deepcopy(model).train(train)
    found: dict[str, torch.Tensor] = {}
    for name in LAYERS:
        twin.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: found.__setitem__(name, out.detach().clone())
        )
    with torch.no_grad():
        twin(images)
    return found


def assert_stats_of(stats: fxmaps.ChannelStats, maps: dict[str, torch.Tensor]) -> None:
    for name in LAYERS:
        per_channel = maps[name].double().transpose(0, 1).flatten(1)
        torch.testing.assert_close(stats[name].mean, per_channel.mean(dim=1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            stats[name].std, per_channel.std(dim=1, correction=0), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(stats[name].max, per_channel.amax(dim=1))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_eval_mode_statistics_by_default_whatever_mode_the_model_is_in(mode: str) -> None:
    model, data = batchnorm_cnn()
    model.train(mode == "train")
    before = snapshot(model)
    stats = channel_stats(model, data, layers=LAYERS, batch_size=8, progress=False)
    assert_unchanged(model, before)
    assert stats.graph is not None
    assert not stats.graph.train
    assert_stats_of(stats, hooked_maps(model, data.tensors[0], train=False))
    # The batch's own statistics would centre every BatchNorm channel at its bias.
    norm = model.get_submodule("4")
    assert isinstance(norm, nn.BatchNorm2d)
    assert not torch.allclose(stats["4"].mean, norm.bias.double(), atol=1e-2)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_training_mode_statistics_when_asked(mode: str) -> None:
    model, data = batchnorm_cnn()
    model.train(mode == "train")
    before = snapshot(model)
    samples = len(data)
    stats = channel_stats(
        model, data, layers=LAYERS, batch_size=samples, train=True, progress=False
    )
    assert_unchanged(model, before)  # running statistics and num_batches_tracked too
    assert stats.graph is not None
    assert stats.graph.train
    assert_stats_of(stats, hooked_maps(model, data.tensors[0], train=True))
    # One batch normalised by its own statistics: each channel's mean is its bias.
    norm = model.get_submodule("4")
    assert isinstance(norm, nn.BatchNorm2d)
    torch.testing.assert_close(stats["4"].mean, norm.bias.detach().double(), atol=1e-5, rtol=0)


def test_a_graph_runs_in_its_own_mode() -> None:
    model, data = batchnorm_cnn()
    before = snapshot(model)
    example = data.tensors[0][:2]
    trained = fxmaps.analyze(model, example, train=True)
    stats = channel_stats(trained, data, layers=LAYERS, batch_size=len(data), progress=False)
    assert_unchanged(model, before)
    assert_stats_of(stats, hooked_maps(model, data.tensors[0], train=True))
    evaluated = fxmaps.analyze(model, example)
    stats = channel_stats(evaluated, data, layers=LAYERS, batch_size=5, progress=False)
    assert_stats_of(stats, hooked_maps(model, data.tensors[0], train=False))
    with pytest.raises(OptionError, match="training-mode graph") as raised:
        channel_stats(trained, data, layers=LAYERS, train=False, progress=False)
    assert raised.value.option == "train"
    assert_unchanged(model, before)


@pytest.mark.parametrize("train", [False, True])
def test_the_stats_command_in_either_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], train: bool
) -> None:
    from fxmaps.cli import main
    from fxmaps.sources.datasets import Digits

    (tmp_path / "net.py").write_text(SIMPLE_CNN)
    spec = f"{tmp_path / 'net.py'}:SimpleCNN"
    argv = ["stats", spec, "--input-size", "1", "28", "28", "--data", "digits"]
    argv += ["--layers", "conv1", "bn1", "--batch-size", "2000", "-o", str(tmp_path / "out")]
    assert main([*argv, "--train"] if train else argv) == 0
    assert "over 1797 samples" in capsys.readouterr().out
    saved = fxmaps.ChannelStats.load(tmp_path / "out" / "stats.pt")
    model = fxmaps.sources.load_model(spec).model
    assert model.training  # as built: the command's eval mode is its own
    found: dict[str, torch.Tensor] = {}
    for name in ("conv1", "bn1"):
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: found.__setitem__(name, out.detach().clone())
        )
    with torch.no_grad():
        model.train(train)(Digits((1, 28, 28)).images)  # one batch: all 1797 digits
    for name, value in found.items():
        per_channel = value.double().transpose(0, 1).flatten(1)
        torch.testing.assert_close(saved[name].mean, per_channel.mean(dim=1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(saved[name].max, per_channel.amax(dim=1))
    norm = model.get_submodule("bn1")
    assert isinstance(norm, nn.BatchNorm2d)
    bias = norm.bias.detach().double()
    assert torch.allclose(saved["bn1"].mean, bias, atol=1e-4) == train
