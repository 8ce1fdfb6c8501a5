"""plot_filters: which view each kind of convolution gets, and the kernels in its tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from matplotlib.figure import Figure
from torch import nn

import fxmaps
from fxmaps.render.filters import FilterFigures, plot_filters
from fxmaps.render.filters import plot_filters as reexported
from tests import models as toy
from tests.test_render_maps import the_image, tiles_of


def weight(module: nn.Module) -> torch.Tensor:
    parameter = module.weight
    assert isinstance(parameter, torch.Tensor)
    return parameter.detach()


def title(fig: Figure) -> str:
    return fig.axes[0].get_title()


def test_rgb_first_layer_filters_are_colour_tiles() -> None:
    conv = nn.Conv2d(3, 8, 5)
    fig = plot_filters(conv)
    image = the_image(fig)
    assert image.shape[-1] == 4  # RGBA
    tiles = tiles_of(image, (3, 3), (5, 5))  # near-square grid; the last cell empty
    kernels = weight(conv).permute(0, 2, 3, 1).double()
    low = kernels.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = kernels.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    np.testing.assert_allclose(tiles[:8, ..., :3], (kernels - low) / (high - low), atol=1e-6)
    assert (tiles[:8, ..., 3] == 1).all()
    assert (tiles[8] == 0).all()  # transparent
    assert "each filter scaled to its own range" in title(fig)


def test_depthwise_conv_has_one_tile_per_channel() -> None:
    conv = nn.Conv2d(8, 8, 3, groups=8)
    fig = plot_filters(conv)
    tiles = tiles_of(the_image(fig), (3, 3), (3, 3))
    np.testing.assert_allclose(tiles[:8], weight(conv)[:, 0].double(), rtol=1e-6)
    assert "depthwise" in title(fig)
    assert len(fig.axes) == 2  # and a colorbar, symmetric about zero
    low, high = fig.axes[0].images[0].get_clim()
    assert low == -high == pytest.approx(-float(weight(conv).abs().max()))


def test_deeper_convs_show_each_input_kernel_per_filter() -> None:
    conv = nn.Conv2d(20, 6, 3)
    fig = plot_filters(conv)
    tiles = tiles_of(the_image(fig), (16, 6), (3, 3))  # a row per input, a column per filter
    expected = weight(conv)[:, :16].transpose(0, 1).reshape(96, 3, 3).double()
    np.testing.assert_allclose(tiles, expected, rtol=1e-6)
    assert "first 16 of 20 inputs" in title(fig)
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("filter", "input channel")


def test_mean_mode_averages_over_inputs() -> None:
    conv = nn.Conv2d(5, 4, 3)
    fig = plot_filters(conv, mode="mean", ncols=4)
    tiles = tiles_of(the_image(fig), (1, 4), (3, 3))
    # The figure averages in float32: compare at float32 resolution, also near zero.
    np.testing.assert_allclose(tiles, weight(conv).mean(dim=1).double(), rtol=1e-5, atol=1e-7)
    assert "mean over inputs" in title(fig)


def test_grouped_conv_shows_each_filters_own_group() -> None:
    conv = nn.Conv2d(8, 4, 3, groups=2)
    fig = plot_filters(conv)
    tiles = tiles_of(the_image(fig), (4, 4), (3, 3))
    np.testing.assert_allclose(tiles, weight(conv).transpose(0, 1).reshape(16, 3, 3), rtol=1e-6)
    assert "groups=2" in title(fig)


def test_one_by_one_conv_is_a_matrix() -> None:
    conv = nn.Conv2d(32, 16, 1)
    image = the_image(plot_filters(conv))
    np.testing.assert_array_equal(image, weight(conv)[:, :, 0, 0].numpy())


def test_conv1d_kernels_are_heat_strips() -> None:
    conv = nn.Conv1d(4, 6, 5)
    fig = plot_filters(conv)
    tiles = tiles_of(the_image(fig), (6, 4), (1, 5))  # a row per filter, a column per input
    np.testing.assert_allclose(tiles, weight(conv).reshape(24, 1, 5).double(), rtol=1e-6)
    single = nn.Conv1d(1, 6, 5)
    image = the_image(plot_filters(single))
    np.testing.assert_array_equal(image, weight(single)[:, 0].numpy())  # filters × taps


def test_transposed_conv_is_shown_by_output_channel() -> None:
    conv = nn.ConvTranspose2d(4, 6, 3)  # weight (in, out, kh, kw)
    fig = plot_filters(conv)
    tiles = tiles_of(the_image(fig), (4, 6), (3, 3))
    np.testing.assert_allclose(tiles, weight(conv).reshape(24, 3, 3).double(), rtol=1e-6)


def test_conv3d_shows_the_middle_depth_slice() -> None:
    conv = nn.Conv3d(3, 4, 3)
    fig = plot_filters(conv, mode="channels")
    tiles = tiles_of(the_image(fig), (3, 4), (3, 3))
    expected = weight(conv)[:, :, 1].transpose(0, 1).reshape(12, 3, 3).double()
    np.testing.assert_allclose(tiles, expected, rtol=1e-6)
    assert "middle depth slice 1 of 3" in title(fig)


def test_layers_tensors_and_limits() -> None:
    graph = fxmaps.analyze(toy.CifarResNet(), torch.randn(1, 3, 32, 32))
    fig = plot_filters(graph.layers("conv")[0], max_filters=4)
    assert the_image(fig).shape[-1] == 4  # conv1 sees RGB
    assert title(fig).startswith("conv1  weight 8×3×3×3")
    assert "first 4 of 8 filters" in title(fig)
    raw = plot_filters(torch.randn(6, 2, 3, 3))
    assert title(raw).startswith("weight 6×2×3×3")
    assert reexported is plot_filters


def test_draws_into_a_given_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_filters(nn.Conv2d(3, 4, 3), ax=ax) is fig
    assert len(ax.images) == 1


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18"])
def test_convs_of_a_video_model_keep_their_modules(name: str) -> None:
    """torchvision's Conv3DSimple and Conv3DNoTemporal subclass nn.Conv3d: every Conv3d in
    the module tree (the oracle) is a node with its module, and plot_filters draws it."""
    model = getattr(torchvision.models.video, name)(weights=None).eval()
    convs = {path: m for path, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    assert any(type(m) is not nn.Conv3d for m in convs.values())  # the subclasses are there
    for graph in (fxmaps.analyze(model), fxmaps.analyze(model, torch.randn(1, 3, 4, 32, 32))):
        layers = graph.layers(["conv", "downsample"])
        assert {layer.target: layer.module for layer in layers} == convs
        assert all(layer.module_type == type(layer.module).__name__ for layer in layers)
    subclassed = next(layer for layer in layers if type(layer.module) is not nn.Conv3d)
    kernels = weight(convs[subclassed.target])
    fig = plot_filters(subclassed, mode="mean", max_filters=4, ncols=4)
    assert title(fig).startswith(f"{subclassed.name}  weight {'×'.join(map(str, kernels.shape))}")
    depth, height, width = kernels.shape[2:]
    tiles = tiles_of(the_image(fig), (1, 4), (height, width))
    expected = kernels[:4, :, depth // 2].mean(dim=1).double()
    np.testing.assert_allclose(tiles, expected, rtol=1e-5, atol=1e-7)


def test_a_parametrized_weight_draws_the_weight_the_conv_uses() -> None:
    # weight_norm moves the weight out of the registry into a parametrization; the tiles
    # must still show what the conv multiplies by.
    conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 8, 5))
    assert "weight" not in conv._parameters
    tiles = tiles_of(the_image(plot_filters(conv)), (3, 3), (5, 5))
    kernels = weight(conv).permute(0, 2, 3, 1).double()
    low = kernels.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = kernels.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    np.testing.assert_allclose(tiles[:8, ..., :3], (kernels - low) / (high - low), atol=1e-6)


def test_filters_read_the_weight_from_the_registry_not_as_an_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # While any thread traces, torch.fx patches nn.Module.__getattr__ process-wide; a
    # module whose attribute reads go wrong stands in for that here.
    conv = nn.Conv2d(3, 8, 5)
    expected = weight(conv).permute(0, 2, 3, 1).double()

    def wrong(self: nn.Module, name: str) -> object:
        raise AssertionError(f"read {name} as an attribute")

    monkeypatch.setattr(nn.Conv2d, "__getattr__", wrong)
    tiles = tiles_of(the_image(plot_filters(conv)), (3, 3), (5, 5))
    low = expected.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = expected.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    np.testing.assert_allclose(tiles[:8, ..., :3], (expected - low) / (high - low), atol=1e-6)


def test_drawable_is_what_plot_filters_draws() -> None:
    from fxmaps.render.filters import drawable

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LazyConv2d(4, 3), nn.ReLU()).eval()
    graph = fxmaps.analyze(model)  # no run: the lazy conv has no weight yet
    answers = {}
    for layer in graph.layers():
        try:
            plot_filters(layer)
            drew = True
        except fxmaps.InputError:
            drew = False
        answers[layer.name] = (drawable(layer), drew)
    assert answers == {name: (drew, drew) for name, (_, drew) in answers.items()}
    assert answers["0"] == (True, True)
    assert answers["1"] == (False, False)


def shared_layout_convs() -> list[nn.Module]:
    """Pairs of convs of one kernel shape (one layout), in every view, between others."""
    torch.manual_seed(0)
    convs: list[nn.Module] = []
    for _ in range(2):
        convs += [
            nn.Conv2d(3, 8, 5),  # rgb
            nn.Conv2d(8, 8, 3, groups=8),  # depthwise grid
            nn.Conv2d(24, 20, 1),  # 1x1: a matrix
            nn.Conv2d(6, 10, 3),  # each input's kernel
            nn.Conv1d(4, 6, 5),  # 1-D kernels
            nn.Conv2d(32, 16, 3),  # inputs cut to 16
        ]
    with torch.no_grad():
        weight(convs[9]).mul_(1000)  # another colour range: the colorbar's ticks change
    return convs


@pytest.mark.parametrize("dpi", [None, 72])
def test_filter_figures_draw_the_pixels_of_plot_filters(dpi: float | None) -> None:
    from fxmaps.render.save import figure_pixels

    figures = FilterFigures()
    drawn: list[int] = []
    for conv in shared_layout_convs():
        shared = figures.plot(conv, max_filters=16, notes=["random weights"])
        drawn.append(id(shared))
        expected = figure_pixels(
            plot_filters(conv, max_filters=16, notes=["random weights"]), dpi=dpi, tight=True
        )
        np.testing.assert_array_equal(figure_pixels(shared, dpi=dpi, tight=True), expected)
    assert drawn[6:] == drawn[:6]  # each second conv of a layout got the first one's figure
    assert len(set(drawn)) == 6


def test_filter_figures_keep_a_title_of_another_height_apart() -> None:
    figures = FilterFigures()
    first = figures.plot(nn.Conv2d(8, 8, 3))
    longer = figures.plot(nn.Conv2d(8, 8, 3), notes=["a note long enough to take a line " * 3])
    assert longer is not first
    assert title(longer).count("\n") > title(first).count("\n")
    assert figures.plot(nn.Conv2d(8, 8, 3)) is first
