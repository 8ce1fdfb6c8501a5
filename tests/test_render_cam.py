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
