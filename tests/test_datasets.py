"""The datasets `fxmaps stats` reads: bundled digits and folders of images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import fxmaps
from fxmaps.sources.datasets import Digits, ImageFiles, image_dataset
from fxmaps.sources.images import DEFAULT_IMAGE


def test_digits_are_shaped_for_the_model() -> None:
    from sklearn.datasets import load_digits

    digits = Digits((3, 32, 32))
    truth = load_digits()
    assert len(digits) == len(truth.target) == 1797
    image, label = digits[5]
    assert image.shape == (3, 32, 32)
    assert label == truth.target[5]
    assert torch.equal(image[0], image[2])  # gray, repeated
    assert 0 <= float(image.min()) <= float(image.max()) <= 1
    assert isinstance(image_dataset("digits", (1, 28, 28)), Digits)


def photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with Image.open(DEFAULT_IMAGE) as photo:
        for i in range(count):
            path = folder / f"photo{i}.png"
            photo.crop((10 * i, 0, 10 * i + 200, 200)).save(path)
            paths.append(path)
    return paths


def test_a_flat_folder(tmp_path: Path) -> None:
    paths = photos(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("not an image")
    data = ImageFiles(tmp_path, (3, 64, 64))
    assert len(data) == 3
    image, label = data[1]
    assert torch.equal(image, fxmaps.load_image(paths[1], size=64)[0])
    assert label == 0


def test_class_folders_are_labels(tmp_path: Path) -> None:
    photos(tmp_path / "cats", 2)
    photos(tmp_path / "dogs", 3)
    data = image_dataset(str(tmp_path), (1, 32, 32))
    assert isinstance(data, ImageFiles)
    assert data.classes == ["cats", "dogs"]
    assert [data[i][1] for i in range(len(data))] == [0, 0, 1, 1, 1]
    assert data[0][0].shape == (1, 32, 32)


def test_bad_data(tmp_path: Path) -> None:
    with pytest.raises(
        fxmaps.InputError, match=r"'nowhere' is neither 'digits' nor a folder"
    ) as excinfo:
        image_dataset("nowhere", (3, 32, 32))
    assert (excinfo.value.argument, excinfo.value.got) == ("data", "nowhere")
    with pytest.raises(fxmaps.InputError, match=r"no images \(.*\.png.*\) in") as excinfo:
        ImageFiles(tmp_path, (3, 32, 32))
    assert (excinfo.value.argument, excinfo.value.got) == ("data", str(tmp_path))
    with pytest.raises(
        fxmaps.InputError, match=r"need a model that takes \(1 or 3, H, W\)"
    ) as excinfo:
        Digits((16,))
    assert (excinfo.value.argument, excinfo.value.got) == ("input_size", "(16,)")
