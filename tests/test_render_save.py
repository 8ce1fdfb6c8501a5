"""save_figure: the pixels matplotlib's savefig writes, in a PNG encoded fast; savefig's
own route wherever its settings would change the image."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib as mpl
import numpy as np
import numpy.typing as npt
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import fxmaps
from fxmaps.render.save import figure_pixels

MAPS = torch.rand(1, 16, 12, 12, generator=torch.Generator().manual_seed(0))


def decoded(data: bytes) -> tuple[npt.NDArray[np.uint8], str, tuple[float, ...]]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA")), image.mode, image.info.get("dpi", ())


def savefig_png(figure: Figure, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.mark.parametrize(("cmap", "mode"), [("gray", "L"), ("viridis", "RGB")])
def test_the_same_pixels_as_savefig_in_fewer_channels(cmap: str, mode: str) -> None:
    figure = fxmaps.plot_feature_maps(MAPS, cmap=cmap)
    buffer = io.BytesIO()
    assert fxmaps.save_figure(figure, buffer) is buffer
    expected, expected_mode, expected_dpi = decoded(savefig_png(figure))
    pixels, written_mode, dpi = decoded(buffer.getvalue())
    assert expected_mode == "RGBA"
    assert written_mode == mode
    np.testing.assert_array_equal(pixels, expected)
    assert dpi == pytest.approx(expected_dpi)


def test_a_transparent_figure_keeps_its_alpha() -> None:
    figure = fxmaps.plot_feature_maps(MAPS, cmap="viridis")
    figure.patch.set_alpha(0.0)
    buffer = io.BytesIO()
    fxmaps.save_figure(figure, buffer)
    pixels, mode, _ = decoded(buffer.getvalue())
    assert mode == "RGBA"
    assert (pixels[..., 3] < 255).any()
    np.testing.assert_array_equal(pixels, decoded(savefig_png(figure))[0])


def test_a_path_is_written_whole_in_the_format_its_suffix_names(tmp_path: Path) -> None:
    figure = fxmaps.plot_feature_maps(MAPS)
    for name, magic in (("maps.png", b"\x89PNG"), ("maps.svg", b"<?xml"), ("maps.pdf", b"%PDF")):
        assert fxmaps.save_figure(figure, tmp_path / name) == tmp_path / name
        assert (tmp_path / name).read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.pdf", "maps.png", "maps.svg"]


def test_savefig_settings_go_through_savefig() -> None:
    figure = fxmaps.plot_feature_maps(MAPS)
    width, height = figure.canvas.get_width_height(physical=True)
    buffer = io.BytesIO()
    fxmaps.save_figure(figure, buffer, dpi=2 * figure.dpi)
    pixels, _, _ = decoded(buffer.getvalue())
    assert pixels.shape[:2] == (2 * height, 2 * width)
    np.testing.assert_array_equal(pixels, decoded(savefig_png(figure, dpi=2 * figure.dpi))[0])
    with mpl.rc_context({"savefig.dpi": 50}):
        buffer = io.BytesIO()
        fxmaps.save_figure(figure, buffer)
        np.testing.assert_array_equal(
            decoded(buffer.getvalue())[0], decoded(savefig_png(figure))[0]
        )


def test_compress_level_trades_size_for_speed() -> None:
    figure = fxmaps.plot_feature_maps(MAPS, cmap="viridis")
    sizes = []
    for level in (0, 9):
        buffer = io.BytesIO()
        fxmaps.save_figure(figure, buffer, compress_level=level)
        sizes.append(len(buffer.getvalue()))
        np.testing.assert_array_equal(
            decoded(buffer.getvalue())[0], decoded(savefig_png(figure))[0]
        )
    assert sizes[0] > sizes[1]
    with pytest.raises(fxmaps.OptionError, match=r"compress_level must be 0 to 9, got 10"):
        fxmaps.save_figure(figure, io.BytesIO(), compress_level=10)


def savefig_pixels(figure: Figure, **kwargs: object) -> npt.NDArray[np.uint8]:
    return decoded(savefig_png(figure, **kwargs))[0]


def distance_within_a_pixel(
    pixels: npt.NDArray[np.uint8], other: npt.NDArray[np.uint8]
) -> npt.NDArray[np.int_]:
    """For each pixel of ``other``, how far the nearest of ``pixels``'s nine pixels around
    it is (the largest channel difference)."""
    height, width = other.shape[:2]
    padded = np.pad(pixels.astype(int), ((1, 1), (1, 1), (0, 0)), mode="edge")
    return np.min(
        [
            np.abs(padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] - other).max(-1)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ],
        axis=0,
    )


FIGURES = {
    "maps": lambda: fxmaps.plot_feature_maps(MAPS, max_maps=9),
    "rgb filters": lambda: fxmaps.plot_filters(torch.nn.Conv2d(3, 8, 5)),
    "depthwise filters": lambda: fxmaps.plot_filters(torch.nn.Conv2d(8, 8, 3, groups=8)),
    "1x1 filters": lambda: fxmaps.plot_filters(torch.nn.Conv2d(40, 16, 1)),
    "filters by channel": lambda: fxmaps.plot_filters(torch.nn.Conv2d(6, 8, 3)),
}


@pytest.mark.parametrize("dpi", [None, 72])
@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_pixels_crop_one_drawing_to_savefigs_tight_box(name: str, dpi: float | None) -> None:
    torch.manual_seed(0)
    figure = FIGURES[name]()
    own = figure.dpi
    resolution = own if dpi is None else dpi
    whole = figure_pixels(figure, dpi=dpi)
    np.testing.assert_array_equal(whole, savefig_pixels(figure, dpi=resolution))
    tight = figure_pixels(figure, dpi=dpi, tight=True, pad_inches=0.04)
    expected = savefig_pixels(figure, dpi=resolution, bbox_inches="tight", pad_inches=0.04)
    assert tight.shape == expected.shape
    # savefig draws the figure again, shifted by a fraction of a pixel into the box: the
    # same picture, but antialiased edges (and images not on whole pixels) land apart.
    apart = distance_within_a_pixel(tight, expected)
    assert (apart > 32).mean() < 0.01
    assert apart.mean() < 1
    assert figure.dpi == own  # put back


def test_figure_pixels_of_a_mosaic_on_whole_pixels_are_savefigs() -> None:
    figure = fxmaps.plot_feature_maps(MAPS, max_maps=16)
    expected = savefig_pixels(figure, bbox_inches="tight", pad_inches=0.1)
    np.testing.assert_array_equal(figure_pixels(figure, tight=True), expected)


def test_figure_pixels_keep_what_reaches_past_the_figure() -> None:
    """A title wider than its figure: cropping the drawn canvas would cut it, so the tight
    box comes from savefig, which widens the figure to show it."""
    figure = fxmaps.plot_feature_maps(MAPS, max_maps=4)
    figure.axes[0].set_title("a title much wider than this small figure " * 3)
    expected = savefig_pixels(figure, bbox_inches="tight", pad_inches=0.04)
    width, _ = figure.canvas.get_width_height()
    assert expected.shape[1] > width
    np.testing.assert_array_equal(figure_pixels(figure, tight=True, pad_inches=0.04), expected)
