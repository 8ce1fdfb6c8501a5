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
