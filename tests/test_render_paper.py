"""Figures fit for a paper: colorbars, the input beside the maps, maps over the photo,
spatial token maps drawn as images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from matplotlib.figure import Figure

import fxmaps
from fxmaps.errors import OptionError
from fxmaps.render.maps import plot_feature_maps
from tests.test_render_maps import scaled, the_image, tiles_of


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return fxmaps.load_image(size=48, normalize=False)  # (1, 3, 48, 48) in [0, 1]


def test_colorbar_on_per_map_tiles_spans_min_to_max() -> None:
    maps = torch.randn(1, 4, 20, 20) * 3
    fig = plot_feature_maps(maps, colorbar=True, ncols=2)
    assert len(fig.axes) == 2  # the mosaic and its colorbar
    bar = fig.axes[1]
    assert [t.get_text() for t in bar.get_yticklabels()] == ["min", "max"]
    tiles = tiles_of(the_image(fig), (2, 2), (20, 20))
    np.testing.assert_allclose(tiles, scaled(maps[0]), atol=1e-6)  # still each map's own range
    title = fig.axes[0].get_title()
    assert f"{float(maps.min()):.3g} to {float(maps.max()):.3g}" in title


def test_colorbar_false_hides_the_shared_colorbar() -> None:
    maps = torch.randn(4, 10, 10)
    assert len(plot_feature_maps(maps, normalize="shared").axes) == 2
    assert len(plot_feature_maps(maps, normalize="shared", colorbar=False).axes) == 1


def test_show_input_draws_the_photo_left_of_the_mosaic(photo: torch.Tensor) -> None:
    maps = torch.rand(1, 4, 12, 12)
    fig = plot_feature_maps(maps, image=photo, show_input=True)
    mosaic_ax, input_ax = fig.axes
    drawn = np.asarray(input_ax.images[0].get_array())
    expected = photo[0].permute(1, 2, 0).numpy()
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(drawn, expected, atol=1e-6)
    mosaic_box, input_box = mosaic_ax.get_position(), input_ax.get_position()
    assert input_box.x1 < mosaic_box.x0
    assert input_box.height == pytest.approx(mosaic_box.height)
    tiles = tiles_of(np.asarray(mosaic_ax.images[0].get_array()), (2, 2), (12, 12))
    np.testing.assert_allclose(tiles, scaled(maps[0]), atol=1e-6)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_overlay_blends_each_map_over_the_photo(photo: torch.Tensor) -> None:
    maps = torch.zeros(1, 2, 6, 6)
    maps[0, 1, :3, :3] = 1.0  # channel 1: hot in the top-left quadrant
    fig = plot_feature_maps(maps, image=photo, overlay=True, cmap="gray", ncols=2)
    image = np.asarray(the_image(fig))
    assert image.shape[2:] == (3,)  # an RGB picture, not colour-mapped values
    flat, spot = tiles_of(image, (1, 2), (128, 128))
    # Channel 0 is constant: the tile is the photo dimmed by the blend, plus black (gray's 0).
    alpha = fxmaps.render.overlay.ALPHA
    recovered = flat / (1 - alpha)
    small = torch.nn.functional.interpolate(photo, size=(128, 128), mode="bilinear", antialias=True)
    reference = small[0].permute(1, 2, 0).numpy()
    assert _correlation(recovered, reference) > 0.97
    reference = (reference - reference.min()) / np.ptp(reference)
    np.testing.assert_allclose(recovered, reference, atol=0.02)
    # Channel 1 is white (gray's 1) over the photo in its top-left quadrant only.
    hot, cold = spot[:48, :48], spot[80:, 80:]
    np.testing.assert_allclose(hot, flat[:48, :48] + alpha, atol=1e-5)
    np.testing.assert_allclose(cold, flat[80:, 80:], atol=1e-5)


def test_show_input_and_overlay_need_an_image() -> None:
    maps = torch.rand(1, 4, 8, 8)
    with pytest.raises(OptionError, match="needs image="):
        plot_feature_maps(maps, overlay=True)
    with pytest.raises(OptionError, match="show_input=True or overlay=True"):
        plot_feature_maps(maps, image=torch.rand(3, 8, 8))


def test_spatial_token_maps_plot_as_square_tiles() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32
        ).eval()
    x = torch.rand(1, 3, 32, 32)
    name = "encoder.layers.encoder_layer_0.add_1"
    tokens = fxmaps.extract(model, x, layers=[name])
    maps = fxmaps.extract(model, x, layers=[name], spatial=True)
    assert tuple(tokens[name].shape) == (1, 17, 16)  # a class token and a 4×4 grid
    assert maps.layer(name).out_shape == tuple(maps[name].shape) == (1, 16, 4, 4)
    assert maps.layer(name).layout is fxmaps.Layout.CHANNELS_FIRST
    grid = tokens[name][0, 1:].reshape(4, 4, 16).permute(2, 0, 1)  # the oracle: tokens as a grid
    fig: Figure = plot_feature_maps(maps, name)
    np.testing.assert_allclose(tiles_of(the_image(fig), (4, 4), (4, 4)), scaled(grid), atol=1e-5)
