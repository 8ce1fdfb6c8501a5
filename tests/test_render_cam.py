"""``plot_cam``: structure of the figure against the result it draws (no pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fxmaps


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def test_a_batch_and_two_methods_give_a_grid_with_one_colorbar() -> None:
    model, x = _model(), torch.rand(2, 3, 20, 20)
    results = [fxmaps.cam(model, x, method=m) for m in ("gradcam", "eigencam")]
    fig = fxmaps.plot_cam(results, x, labels=["cat", "dog", "fox"])
    panels, bar = fig.axes[:-1], fig.axes[-1]
    assert len(panels) == 4
    for i, ax in enumerate(panels):
        result = results[i % 2]
        sample = i // 2
        photo, overlay = ax.images
        np.testing.assert_array_equal(overlay.get_array(), result.maps[sample].numpy())
        assert np.asarray(photo.get_array()).shape == (20, 20)
        title = ax.get_title()
        assert result.method in title
        assert ["cat", "dog", "fox"][int(result.targets[sample] or 0)] in title
        assert f"{float(result.scores[sample]):.3g}" in title
    assert bar.get_ylim() == (0.0, 1.0)


def test_draws_into_a_given_axes() -> None:
    from matplotlib.figure import Figure

    model, x = _model(), torch.rand(1, 3, 20, 20)
    fig = Figure()
    ax = fig.add_subplot()
    assert fxmaps.plot_cam(fxmaps.cam(model, x, 2), x, ax=ax) is fig
    assert "class 2" in ax.get_title()


def test_an_image_of_another_size_is_refused() -> None:
    model, x = _model(), torch.rand(1, 3, 20, 20)
    result = fxmaps.cam(model, x)
    with pytest.raises(fxmaps.InputError, match=r"does not match maps of \(1, 20, 20\)"):
        fxmaps.plot_cam(result, torch.rand(1, 3, 24, 24))


# ---------------------------------------------------------------- 1-d maps of signals


def _signal_model(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(channels, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def test_a_signal_batch_is_drawn_as_lines_over_its_map() -> None:
    model, x = _signal_model(2), torch.randn(3, 2, 40)
    results = [fxmaps.cam(model, x, method=m) for m in ("gradcam", "scorecam")]
    fig = fxmaps.plot_cam(results, x, labels=["cat", "dog", "fox"])
    panels, bar = fig.axes[:-1], fig.axes[-1]
    assert len(panels) == 6  # a row per sample, a column per method
    for i, ax in enumerate(panels):
        result, sample = results[i % 2], i // 2
        (band,) = ax.images
        np.testing.assert_array_equal(band.get_array(), result.maps[sample].numpy()[None])
        assert len(ax.lines) == 2  # one line per channel
        for line, channel in zip(ax.lines, x[sample], strict=True):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(40))
            np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), channel.numpy())
        low, high = ax.get_ylim()
        assert low < float(x[sample].min())
        assert float(x[sample].max()) < high
        title = ax.get_title()
        assert result.method in title
        assert ["cat", "dog", "fox"][int(result.targets[sample] or 0)] in title
    assert bar.get_ylim() == (0.0, 1.0)


def test_a_signal_of_many_channels_is_drawn_as_their_mean() -> None:
    from fxmaps.render.cam_signal import MAX_LINES

    model, x = _signal_model(MAX_LINES + 1), torch.randn(2, MAX_LINES + 1, 30)
    result = fxmaps.cam(model, x)
    fig = fxmaps.plot_cam(result, x, ncols=2)
    panels = fig.axes[:-1]
    assert len(panels) == 2
    assert panels[0].get_position().y0 == panels[1].get_position().y0  # two in a row
    for sample, ax in enumerate(panels):
        (line,) = ax.lines
        np.testing.assert_allclose(
            np.asarray(line.get_ydata(), dtype=float), x[sample].mean(dim=0).numpy(), atol=1e-6
        )
        assert f"mean of {MAX_LINES + 1} channels" in ax.get_title()


def test_a_signal_draws_into_a_given_axes() -> None:
    from matplotlib.figure import Figure

    model, x = _signal_model(1), torch.randn(1, 1, 25)
    fig = Figure()
    ax = fig.add_subplot()
    assert fxmaps.plot_cam(fxmaps.cam(model, x, 2), x[0], ax=ax) is fig  # (C, L): one sample
    assert "class 2" in ax.get_title()
    assert len(fig.axes) == 2  # the axes and its colorbar


def test_a_signal_of_another_length_is_refused() -> None:
    model, x = _signal_model(2), torch.randn(1, 2, 40)
    result = fxmaps.cam(model, x)
    with pytest.raises(
        fxmaps.InputError, match=r"signal of shape \(1, 2, 32\) .* maps of \(1, 40\)"
    ):
        fxmaps.plot_cam(result, torch.randn(1, 2, 32))
