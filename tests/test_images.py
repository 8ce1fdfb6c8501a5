"""load_image: files, URLs, the default photo, conversions, and clear errors."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import fxmaps
from fxmaps.sources.images import DEFAULT_IMAGE, IMAGENET_MEAN, IMAGENET_STD, read_image


def test_default_photo() -> None:
    image = fxmaps.load_image()
    assert image.shape == (1, 3, 224, 224)
    raw = fxmaps.load_image(normalize=False)
    assert raw.min() >= 0
    assert raw.max() <= 1
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(image, (raw - mean) / std)


def test_resize_and_center_crop(tmp_path: Path) -> None:
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, 10:70] = 255  # a white band wider than the centre crop (columns 20 to 60)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = fxmaps.load_image(tmp_path / "wide.png", size=20, normalize=False)
    assert image.shape == (1, 3, 20, 20)
    assert torch.all(image == 1)


def test_weights_own_transforms() -> None:
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    expected = weights.transforms()(Image.open(DEFAULT_IMAGE)).unsqueeze(0)
    assert torch.equal(fxmaps.load_image(weights="ResNet18_Weights.IMAGENET1K_V1"), expected)
    inception = fxmaps.load_image(weights=torchvision.models.Inception_V3_Weights.DEFAULT)
    assert inception.shape == (1, 3, 299, 299)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_other_modes_are_converted_with_a_note(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode.replace(';', '')}.png"
    Image.open(DEFAULT_IMAGE).convert(mode).save(path)
    with pytest.warns(fxmaps.FxmapsWarning, match=rf"is a {mode} image; converted to RGB"):
        image = fxmaps.load_image(path)
    assert image.shape == (1, 3, 224, 224)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    Image.open(DEFAULT_IMAGE).save(tmp_path / "cat.png")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_url(server: str) -> None:
    assert torch.equal(fxmaps.load_image(f"{server}/cat.png"), fxmaps.load_image(DEFAULT_IMAGE))


def test_an_opened_image_is_only_converted() -> None:
    photo = read_image()
    assert torch.equal(fxmaps.load_image(photo), fxmaps.load_image())
    gray = photo.convert("L")
    with pytest.warns(fxmaps.FxmapsWarning, match=r"the image' is a L image; converted to RGB"):
        assert fxmaps.load_image(gray).shape == (1, 3, 224, 224)


def test_a_report_downloads_its_image_once(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[str] = []

    def log(self: http.server.SimpleHTTPRequestHandler, fmt: str, *args: object) -> None:
        requests.append(self.path)

    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "log_message", log)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    fxmaps.report(net, f"{server}/cat.png", tmp_path / "net.html")
    assert requests == ["/cat.png"]
    assert f"{server}/cat.png" in (tmp_path / "net.html").read_text()


def test_unreachable_url(server: str) -> None:
    with pytest.raises(
        fxmaps.ImageError, match=r"cannot download '.*/missing.png': HTTP 404"
    ) as excinfo:
        fxmaps.load_image(f"{server}/missing.png")
    assert excinfo.value.source == f"{server}/missing.png"
    with pytest.raises(fxmaps.ImageError, match=r"cannot download 'http://127.0.0.1:9/x.png'"):
        fxmaps.load_image("http://127.0.0.1:9/x.png")
