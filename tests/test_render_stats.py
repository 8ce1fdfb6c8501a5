"""plot_top_images and plot_channel_stats: which samples land in which tile, and the counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fxmaps.render.stats import plot_channel_stats, plot_top_images
from fxmaps.stats.channels import ChannelStats, channel_stats
from tests.models import dead_channel_cnn

CELL, PAD = 96, 4


def the_image(fig: Figure) -> np.ndarray:
    images = fig.axes[0].images
    assert len(images) == 1
    return np.asarray(images[0].get_array())


def tile(image: np.ndarray, row: int, col: int) -> np.ndarray:
    top, left = row * (CELL + PAD), col * (CELL + PAD)
    return image[top : top + CELL, left : left + CELL]


def shown(sample: torch.Tensor) -> np.ndarray:
    """The oracle for a tile without heat: nearest-resized, scaled to [0, 1], gray as RGB."""
    big = F.interpolate(sample[None], size=(CELL, CELL), mode="nearest")[0, 0]
    scaled = (big - big.min()) / (big.max() - big.min())
    return np.repeat(scaled.numpy()[..., None], 3, axis=-1)


@pytest.fixture(scope="module")
def stats() -> ChannelStats:
    model, data = dead_channel_cnn()
    return channel_stats(model, data, layers=["0", "3"], topk=5, progress=False)


def test_tiles_hold_each_channels_top_samples(stats: ChannelStats, tmp_path: Path) -> None:
    _, data = dead_channel_cnn()
    loaded = ChannelStats.load(stats.save(tmp_path / "s.pt"))
    assert loaded.graph is None  # so no heat: the tiles are the samples themselves
    fig = plot_top_images(loaded, data, "3", channels=[4, 0, 7], k=3)
    image = the_image(fig)
    assert image.shape == (3 * (CELL + PAD) - PAD, 3 * (CELL + PAD) - PAD, 3)
    for row, channel in enumerate([4, 0, 7]):
        for col in range(3):
            index = int(loaded["3"].top_indices[channel, col])
            np.testing.assert_allclose(tile(image, row, col), shown(data[index][0]), atol=1e-6)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels[0] == "ch 4"
    assert labels[1].startswith(f"#{int(loaded['3'].top_indices[4, 0])} ")


def test_heat_maps_are_overlaid_when_the_model_is_known(stats: ChannelStats) -> None:
    _, data = dead_channel_cnn()
    assert stats.graph is not None
    heated = the_image(plot_top_images(stats, data, "3", channels=[1], k=2))
    index = int(stats["3"].top_indices[1, 0])
    assert not np.allclose(tile(heated, 0, 0), shown(data[index][0]))
    assert heated.min() >= 0
    assert heated.max() <= 1


def test_default_channels_skip_dead_ones(stats: ChannelStats) -> None:
    _, data = dead_channel_cnn()
    fig = plot_top_images(stats, data, "0", k=2)
    rows = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("ch ")]
    assert "ch 2" not in rows  # the dead channel
    assert len(rows) == 5  # the other channels of the 6, at most 8


def test_channel_stats_histograms(stats: ChannelStats) -> None:
    fig = plot_channel_stats(stats)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "0: channel means (6 channels)",
        f"0: fraction positive ({len(stats['0'].dead)} dead)",
        "3: channel means (8 channels)",
        f"3: fraction positive ({len(stats['3'].dead)} dead)",
    ]
    counts = [
        sum(bar.get_height() for bar in ax.patches if isinstance(bar, Rectangle)) for ax in fig.axes
    ]
    assert counts == [6, 6, 8, 8]  # every channel lands in one bar


def test_channel_stats_histograms_have_axis_labels_inside_the_figure(stats: ChannelStats) -> None:
    fig = plot_channel_stats(stats)
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [
        ("mean activation of a channel", "channels"),
        ("fraction of its values above 0", "channels"),
    ] * len(stats)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [box for ax in fig.axes if (box := ax.get_tightbbox(renderer)) is not None]
    assert len(boxes) == len(fig.axes)
    for upper, lower in zip(boxes, boxes[2:], strict=False):  # a row's labels clear the next row
        assert upper.y0 > lower.y1
    assert all(box.y0 >= 0 and box.y1 <= fig.bbox.height for box in boxes)
