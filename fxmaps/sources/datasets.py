"""Datasets for ``fxmaps stats``: scikit-learn's bundled digits, or a folder of images.

Every sample comes out as a ``(C, H, W)`` float tensor shaped for the model, with its
label (the class folder's index, the digit, or 0 for a flat folder).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fxmaps.errors import InputError
from fxmaps.sources.images import load_image

__all__ = ["Digits", "ImageFiles", "image_dataset"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class Digits(Dataset[tuple[torch.Tensor, int]]):
    """scikit-learn's 1797 bundled 8x8 digits, resized to ``(C, H, W)`` in [0, 1]."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:
            raise InputError(
                "--data digits needs scikit-learn: pip install scikit-learn",
                argument="data",
                got="digits",
            ) from err
        channels, height, width = _chw(shape)
        data = load_digits()
        images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
        self.images = images.expand(-1, channels, -1, -1).contiguous()
        self.labels = [int(t) for t in data.target]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.labels[index]


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """The images of a folder, or of its class subfolders (torchvision's ImageFolder layout).

    Each image is loaded like :func:`fxmaps.load_image` (shorter side resized, centre
    crop, ImageNet normalisation) and averaged to one channel for one-channel models.
    """

    def __init__(self, root: str | Path, shape: tuple[int, ...]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(
                f"--data {str(root)!r} is neither 'digits' nor a folder",
                argument="data",
                got=str(root),
            )
        self.channels, self.size, _ = _chw(shape)
        classes = sorted(p for p in self.root.iterdir() if p.is_dir() and _images(p))
        if classes:
            self.files = [(f, label) for label, c in enumerate(classes) for f in _images(c)]
            self.classes = [c.name for c in classes]
        else:
            self.files = [(f, 0) for f in _images(self.root)]
            self.classes = []
        if not self.files:
            suffixes = " ".join(sorted(IMAGE_SUFFIXES))
            raise InputError(
                f"no images ({suffixes}) in {str(root)!r} or its subfolders",
                argument="data",
                got=str(root),
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[index]
        image = load_image(path, size=self.size)[0]
        if self.channels == 1:
            image = image.mean(dim=0, keepdim=True)
        return image, label


def image_dataset(spec: str, shape: tuple[int, ...]) -> Dataset[tuple[torch.Tensor, int]]:
    """``"digits"`` or a folder path, as a dataset of inputs of ``shape`` ``(C, H, W)``."""
    return Digits(shape) if spec == "digits" else ImageFiles(spec, shape)


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise InputError(
            f"image datasets need a model that takes (1 or 3, H, W) images, not {shape}; "
            "pass --input-size C H W",
            argument="input_size",
            got=str(shape),
        )
    return shape[0], shape[1], shape[2]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
