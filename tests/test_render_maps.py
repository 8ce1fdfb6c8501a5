"""plot_feature_maps, plot_layers and mosaic: structure of the figures, not their pixels.

Oracles come from the tensors: the tile at a position holds the channel its label
names, scaled the documented way; the energy order is recomputed with torch.
"""

from __future__ import annotations

import ast
import itertools
import pickle
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import numpy.typing as npt
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from torch import nn

import fxmaps
from fxmaps.classify import Kind, Layout
from fxmaps.errors import FxmapsWarning, InputError, NodeNotFoundError, OptionError
from fxmaps.extract.maps import FeatureMaps
from fxmaps.graph import Layer
from fxmaps.render.maps import mosaic, plot_feature_maps, plot_layers
from tests import models as toy

Floats = npt.NDArray[np.float64]


# -- helpers shared with test_render_filters -----------------------------------------------------


def the_image(fig: Figure) -> np.ma.MaskedArray[Any, Any]:
    """The one image drawn in the figure (colorbars hold none)."""
    images = [image for ax in fig.axes for image in ax.images]
    assert len(images) == 1
    array: np.ma.MaskedArray[Any, Any] = np.ma.asarray(images[0].get_array())
    return array


def tiles_of(image: npt.ArrayLike, grid: tuple[int, int], tile: tuple[int, int]) -> Floats:
    """Cut a mosaic back into its ``rows * cols`` tiles of ``tile`` data pixels.

    The mosaic may have enlarged every tile by a whole factor and padded them by one or
    two pixels; both are found from the image's shape.
    """
    array = np.ma.filled(np.ma.asarray(image, dtype=np.float64), np.nan)
    (rows, cols), (height, width) = grid, tile
    for zoom, pad in itertools.product(range(1, 80), (1, 2)):
        if array.shape[:2] == (
            rows * (height * zoom + pad) - pad,
            cols * (width * zoom + pad) - pad,
        ):
            break
    else:
        raise AssertionError(f"{array.shape} is no {grid} grid of {tile} tiles")
    step_y, step_x = height * zoom + pad, width * zoom + pad
    cells = itertools.product(range(0, rows * step_y, step_y), range(0, cols * step_x, step_x))
    return np.stack(
        [array[y : y + height * zoom : zoom, x : x + width * zoom : zoom] for y, x in cells]
    )


def scaled(maps: torch.Tensor) -> Floats:
    """Each map to [0, 1] by its own minimum and maximum."""
    flat = maps.double().flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    shape = (-1,) + (1,) * (maps.dim() - 1)
    result: Floats = ((maps.double() - low.view(shape)) / (high - low).view(shape)).numpy()
    return result


def texts(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.axes[0].texts]


def layer(name: str, layout: Layout) -> Layer:
    return Layer(
        name=name, kind=Kind.LINEAR, target=name, module=None, out_shape=None, params=0,
        block=None, layout=layout,
    )  # fmt: skip


# -- mosaic --------------------------------------------------------------------------------------


def test_mosaic_lays_out_64_maps_in_an_8_by_8_grid() -> None:
    maps = torch.rand(64, 10, 10)
    image = mosaic(maps.numpy())
    assert image.shape == (8 * 10 + 7, 8 * 10 + 7)
    assert np.isnan(image[10]).all()
    assert np.isnan(image[:, 10]).all()
    np.testing.assert_allclose(tiles_of(image, (8, 8), (10, 10)), scaled(maps), atol=1e-6)


def test_mosaic_columns_padding_and_empty_cells() -> None:
    image = mosaic(np.random.rand(10, 5, 6), ncols=4, pad=2)
    assert image.shape == (3 * 5 + 2 * 2, 4 * 6 + 3 * 2)
    assert np.isnan(image[-5:, 2 * 8 :]).all()  # the last row's two empty cells
    assert not np.isnan(image[-5:, :6]).any()
    assert not np.isnan(image[-5:, 8:14]).any()


def test_mosaic_shared_and_raw_values() -> None:
    maps = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 3.0)])
    maps[1, 0, 0] = 5.0
    shared = mosaic(maps, normalize="shared")
    assert [float(np.nanmin(shared)), float(np.nanmax(shared))] == [0.0, 1.0]
    assert (shared[0, 0], shared[0, 5], shared[1, 5]) == (0.0, 1.0, 0.5)
    np.testing.assert_array_equal(mosaic(maps, normalize="none")[:4, :4], maps[0])
    assert (mosaic(maps)[:4, :4] == 0).all()  # a constant map


# -- plot_feature_maps ---------------------------------------------------------------------------


def test_one_image_with_a_label_per_channel() -> None:
    maps = torch.rand(1, 64, 40, 40)
    fig = plot_feature_maps(maps)
    assert isinstance(fig, Figure)
    image = the_image(fig)
    assert image.shape == (8 * 41 - 1, 8 * 41 - 1)  # shown pixel for pixel
    assert texts(fig) == [str(c) for c in range(64)]
    assert fig.axes[0].get_title() == "1×64×40×40"
    tiles = tiles_of(image, (8, 8), (40, 40))
    np.testing.assert_allclose(tiles, scaled(maps[0]), atol=1e-6)
    assert (tiles.min(axis=(1, 2)) == 0).all()
    assert (tiles.max(axis=(1, 2)) == 1).all()


def test_max_maps_limits_the_tiles() -> None:
    fig = plot_feature_maps(torch.rand(20, 30, 30), max_maps=10)
    assert texts(fig) == [str(c) for c in range(10)]
    tiles_of(the_image(fig), (3, 4), (30, 30))  # ceil(sqrt(10)) columns
    assert "10 of 20 channels" in fig.axes[0].get_title()


def test_energy_order_puts_the_most_active_channel_first() -> None:
    maps = torch.randn(1, 12, 36, 36) * torch.rand(1, 12, 1, 1) * 10
    expected = maps[0].abs().mean(dim=(1, 2)).argsort(descending=True)[:6]
    fig = plot_feature_maps(maps, order="energy", max_maps=6, ncols=3)
    assert texts(fig) == [str(int(c)) for c in expected]
    tiles = tiles_of(the_image(fig), (2, 3), (36, 36))
    np.testing.assert_allclose(tiles, scaled(maps[0, expected]), atol=1e-6)


def test_shared_normalisation_keeps_values_and_adds_a_colorbar() -> None:
    maps = torch.randn(4, 50, 50)
    fig = plot_feature_maps(maps, normalize="shared", ncols=2)
    assert len(fig.axes) == 2  # the mosaic and its colorbar
    assert fig.axes[0].images[0].get_clim() == pytest.approx((float(maps.min()), float(maps.max())))
    tiles = tiles_of(the_image(fig), (2, 2), (50, 50))
    np.testing.assert_allclose(tiles, maps.double().numpy(), rtol=1e-6)


def test_nan_and_inf_are_masked_with_a_warning() -> None:
    maps = torch.rand(4, 60, 60)
    maps[1, 5, 5], maps[2, 0, :2] = float("nan"), float("inf")
    with pytest.warns(FxmapsWarning, match=r"3 NaN or infinite values in channel\(s\) 1, 2"):
        fig = plot_feature_maps(maps)
    tiles = tiles_of(the_image(fig), (2, 2), (60, 60))  # masked pixels read as NaN
    assert int(np.isnan(tiles).sum()) == 3
    assert np.isnan(tiles[1, 5, 5])
    assert fig.axes[0].images[0].cmap.get_bad().tolist() == [1.0, 0.0, 1.0, 1.0]


def test_a_single_map() -> None:
    single = torch.rand(240, 330)
    fig = plot_feature_maps(single, title="one map")
    np.testing.assert_allclose(the_image(fig), scaled(single[None])[0], atol=1e-6)
    assert texts(fig) == []  # nothing to tell apart
    assert fig.axes[0].get_title() == "one map"


def test_batch_sample_selection() -> None:
    batch = torch.rand(3, 4, 40, 40)
    fig = plot_feature_maps(batch, sample=-1)
    np.testing.assert_allclose(
        tiles_of(the_image(fig), (2, 2), (40, 40)), scaled(batch[2]), atol=1e-6
    )
    assert "sample 2 of 3" in fig.axes[0].get_title()


def test_3d_maps_show_the_middle_depth_slice() -> None:
    volume = torch.rand(1, 4, 5, 40, 40)
    fig = plot_feature_maps(volume)
    assert "middle depth slice 2 of 5" in fig.axes[0].get_title()
    tiles = tiles_of(the_image(fig), (2, 2), (40, 40))
    np.testing.assert_allclose(tiles, scaled(volume[0, :, 2]), atol=1e-6)


def test_1d_maps_are_rows_of_one_heat_image() -> None:
    model = nn.Sequential(nn.Conv1d(2, 6, 3))
    maps = fxmaps.extract(model, torch.randn(2, 2, 50), layers=["0"])
    fig = plot_feature_maps(maps, sample=1)
    image = the_image(fig)
    assert image.shape == (6, 48)
    np.testing.assert_allclose(image, scaled(maps["0"][1]), atol=1e-6)
    ax = fig.axes[0]
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("channel", "position")
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(c) for c in range(6)]


def test_channels_last_grids_are_permuted() -> None:
    grid = torch.rand(1, 40, 40, 9)
    maps = FeatureMaps({"x": grid}, {"x": layer("x", Layout.CHANNELS_LAST)})
    fig = plot_feature_maps(maps)
    assert fig.axes[0].get_title() == "x  1×40×40×9"
    tiles = tiles_of(the_image(fig), (3, 3), (40, 40))
    np.testing.assert_allclose(tiles, scaled(grid[0].permute(2, 0, 1)), atol=1e-6)


def test_square_tokens_become_a_grid_without_the_class_token() -> None:
    tokens = torch.rand(1, 1 + 36, 5)
    maps = FeatureMaps({"t": tokens}, {"t": layer("t", Layout.CHANNELS_LAST)})
    fig = plot_feature_maps(maps, "t", ncols=5)
    assert "1 leading token(s) dropped" in fig.axes[0].get_title()
    spatial = tokens[0, 1:].reshape(6, 6, 5).permute(2, 0, 1)
    np.testing.assert_allclose(tiles_of(the_image(fig), (1, 5), (6, 6)), scaled(spatial), atol=1e-6)


def test_other_tokens_are_a_channels_by_tokens_image() -> None:
    tokens = torch.rand(1, 35, 5)  # neither 35 nor 35 - k (k <= 8 class tokens) is square
    maps = FeatureMaps({"t": tokens}, {"t": layer("t", Layout.CHANNELS_LAST)})
    fig = plot_feature_maps(maps)
    np.testing.assert_allclose(the_image(fig), scaled(tokens[0].T), atol=1e-6)
    assert fig.axes[0].get_xlabel() == "token"


def test_feature_maps_of_several_need_a_name() -> None:
    maps = FeatureMaps(
        {"a": torch.rand(1, 2, 4, 4), "b": torch.rand(1, 2, 4, 4)},
        {"a": layer("a", Layout.CHANNELS_FIRST), "b": layer("b", Layout.CHANNELS_FIRST)},
    )
    with pytest.raises(
        InputError, match="holds 2 maps; say which to draw with name=, one of 'a', 'b'"
    ) as excinfo:
        plot_feature_maps(maps)
    assert excinfo.value.argument == "name"
    with pytest.raises(NodeNotFoundError, match="no map named 'c'") as not_found:
        plot_feature_maps(maps, "c")
    assert not_found.value.name == "c"
    assert texts(plot_feature_maps(maps, "b")) == ["0", "1"]


def test_draws_into_a_given_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_feature_maps(torch.rand(4, 30, 30), ax=ax, normalize="shared") is fig
    assert len(ax.images) == 1
    assert len(fig.axes) == 2  # the colorbar takes room beside ax


def resampled(*args: object, **kwargs: object) -> None:
    raise AssertionError("the mosaic was resampled")


def in_figure(figsize: tuple[float, float], rect: tuple[float, float, float, float] | None) -> Axes:
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig.add_subplot() if rect is None else fig.add_axes(rect)


@pytest.mark.filterwarnings("ignore::fxmaps.errors.FxmapsWarning")
@pytest.mark.parametrize(
    ("figsize", "rect", "dpi", "zoom"),
    [
        (None, None, 100, 1),  # the figure plot_feature_maps makes: the mosaic pixel for pixel
        (None, None, 200, 2),  # ... saved at twice its dpi
        ((15, 15), None, 100, 2),  # the tutorials' figure size, a user's subplot
        ((7.31, 6.17), (0.113, 0.07, 0.8, 0.85), 100, 1),  # an axes on fractional pixels
        ((12, 11), (0, 0, 1, 0.95), 100, 2),  # room for twice the mosaic: a whole factor
    ],
)
def test_the_mosaic_is_drawn_by_a_whole_factor_without_resampling(
    figsize: tuple[float, float] | None,
    rect: tuple[float, float, float, float] | None,
    dpi: int,
    zoom: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    maps = torch.randn(1, 16, 60, 60)
    maps[0, 3, 7, 9] = float("nan")
    ax = None if figsize is None else in_figure(figsize, rect)
    fig = plot_feature_maps(maps, labels=False, cmap="magma", ax=ax)
    fig.set_dpi(dpi)
    with monkeypatch.context() as patch:  # no resampling: the point is to skip its cost
        patch.setattr(matplotlib.image, "_resample", resampled)
        fig.canvas.draw()
    picture = fig.axes[0].images[0]
    # The oracle: the colour-mapped mosaic, each pixel repeated `zoom` times, where it lies.
    expected = picture.to_rgba(the_image(fig), bytes=True).repeat(zoom, 0).repeat(zoom, 1)
    height, width = expected.shape[:2]
    box = picture.get_window_extent()
    assert (round(box.height), round(box.width)) == (height, width)
    canvas = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    top, left = canvas.shape[0] - round(box.y1), round(box.x0)
    np.testing.assert_array_equal(canvas[top : top + height, left : left + width], expected)
    # ... and the same pixels as matplotlib's own (nearest-neighbour) resampling.
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    drawn, reference = picture.make_image(renderer), AxesImage.make_image(picture, renderer)
    np.testing.assert_array_equal(drawn[0], reference[0])
    assert drawn[1:3] == reference[1:3]
    title = fig.axes[0].title.get_window_extent()
    assert 0 <= title.y0 - box.y1 < 10 * dpi / 100  # just above the image


def test_figures_survive_pickling() -> None:
    fig = plot_feature_maps(torch.rand(4, 30, 30), normalize="shared")
    copy = pickle.loads(pickle.dumps(fig))
    np.testing.assert_array_equal(the_image(copy), the_image(fig))
    copy.canvas.draw()


def test_a_mosaic_larger_than_the_axes_is_shrunk_to_fit() -> None:
    ax = in_figure((4, 4), None)
    fig = plot_feature_maps(torch.rand(1, 64, 112, 112), ax=ax)
    fig.canvas.draw()
    box = ax.images[0].get_window_extent()
    assert box.width == pytest.approx(min(ax.bbox.width, ax.bbox.height))
    assert ax.images[0].get_interpolation() == "auto"  # smoothed, not nearest


def test_real_maps_and_kept_channels_label_the_real_index() -> None:
    graph = fxmaps.analyze(toy.CifarResNet(), torch.randn(1, 3, 32, 32))
    batch = torch.randn(1, 3, 32, 32)
    maps = fxmaps.extract(graph, batch, layers=["conv1", "layer2.0.conv1"])
    fig = plot_feature_maps(maps, "layer2.0.conv1", order="energy", max_maps=8)
    expected = maps["layer2.0.conv1"][0].abs().mean(dim=(1, 2)).argsort(descending=True)[:8]
    assert texts(fig) == [str(int(c)) for c in expected]
    kept = fxmaps.extract(graph, batch, layers=["conv1"], channels=[5, 2, 7])
    assert texts(plot_feature_maps(kept)) == ["5", "2", "7"]


# -- plot_layers ---------------------------------------------------------------------------------


def test_plot_layers_draws_a_labelled_strip_per_map() -> None:
    graph = fxmaps.analyze(toy.CifarResNet(), torch.randn(1, 3, 32, 32))
    names = ["conv1", "layer1.0.conv2", "layer2.0.conv1", "layer3.0.conv2"]
    maps = fxmaps.extract(graph, torch.randn(1, 3, 32, 32), layers=names)
    fig = plot_layers(maps, per_layer=4)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(names)
    for ax, name in zip(fig.axes, names, strict=True):
        shape = fxmaps.format_shape(tuple(maps[name].shape))
        assert ax.get_title(loc="left").startswith(f"{name}  {shape}")
        assert len(ax.images) == 1
        expected = maps[name][0].abs().mean(dim=(1, 2)).argsort(descending=True)[:4]
        assert [t.get_text() for t in ax.texts] == [str(int(c)) for c in expected]


def test_plot_layers_says_which_maps_it_cannot_draw() -> None:
    maps = FeatureMaps(
        {"conv": torch.rand(1, 3, 8, 8), "score": torch.rand(1)},
        {"conv": layer("conv", Layout.CHANNELS_FIRST), "score": layer("score", Layout.UNKNOWN)},
    )
    fig = plot_layers(maps, order="index")
    assert len(fig.axes) == 2
    assert fig.axes[1].texts[0].get_text().startswith("score: not drawn")


def test_plot_layers_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="non-empty FeatureMaps") as input_info:
        plot_layers({"x": torch.rand(1, 2, 3, 3)})  # type: ignore[arg-type]
    assert (input_info.value.argument, input_info.value.got) == ("maps", "dict")
    with pytest.raises(OptionError, match="per_layer=0") as excinfo:
        plot_layers(
            FeatureMaps({"x": torch.rand(1, 2, 3, 3)}, {"x": layer("x", Layout.UNKNOWN)}),
            per_layer=0,
        )
    assert (excinfo.value.option, excinfo.value.value) == ("per_layer", 0)


# -- headless and light --------------------------------------------------------------------------


def test_no_pyplot_figures_are_left_behind() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_feature_maps(torch.rand(3, 8, 8))
    plot_layers(FeatureMaps({"x": torch.rand(1, 2, 3, 3)}, {"x": layer("x", Layout.UNKNOWN)}))
    assert plt.get_fignums() == before


@pytest.mark.parametrize("module", ["maps.py", "filters.py"])
def test_matplotlib_is_imported_only_when_drawing(module: str) -> None:
    tree = ast.parse((Path(fxmaps.__file__).parent / "render" / module).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name for node in top_level for alias in node.names]
    names += [node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
    assert not [name for name in names if name.startswith("matplotlib")]
