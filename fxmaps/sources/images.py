"""Input images: loading a file or URL, preprocessing it for a model, and the default photo.

With torchvision weights, an image is preprocessed by the weights' own transforms
(their resize, crop and normalisation); otherwise it is resized so its shorter
side is ``size``, center-cropped to ``size x size`` and normalised with the
ImageNet mean and standard deviation. Grayscale, palette and RGBA images are
converted to RGB, with an :class:`~fxmaps.errors.FxmapsWarning` saying so.
"""

from __future__ import annotations

import io
import math
import os
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torchvision
from torchvision.transforms import functional as TF

from fxmaps.errors import FxmapsWarning, ImageError, OptionError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["DEFAULT_IMAGE", "IMAGENET_MEAN", "IMAGENET_STD", "load_image", "read_image"]

DEFAULT_IMAGE = Path(__file__).parent / "data" / "chelsea.jpg"
"""The photo used when none is given: Chelsea the cat (scikit-image's sample data, CC0)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TIMEOUT_S = 15


def load_image(
    path_or_url: str | Path | Image | None = None,
    *,
    size: int = 224,
    weights: Any = None,
    normalize: bool = True,
) -> torch.Tensor:
    """An image as a ``(1, 3, H, W)`` float batch, ready for a model.

    Args:
        path_or_url: A local file, an ``http(s)://`` URL, an opened PIL image
            (see :func:`read_image`), or ``None`` for the bundled default photo.
        size: Side of the square crop (ignored when ``weights`` are given).
        weights: torchvision weights (a ``WeightsEnum`` value or its name, such as
            ``"ResNet18_Weights.IMAGENET1K_V1"``) whose own transforms to use.
        normalize: Normalise for the model; ``False`` gives values in ``[0, 1]``
            for display.

    Raises:
        ImageError: A missing, truncated, corrupt or non-image file, or an
            unreachable URL.
        OptionError: ``size`` is not positive or makes an image above PIL's limit
            (``PIL.Image.MAX_IMAGE_PIXELS``), or ``weights`` names no weights.

    Example:
        >>> import fxmaps
        >>> fxmaps.load_image().shape
        torch.Size([1, 3, 224, 224])
    """
    if size < 1:
        raise OptionError(
            f"size={size} must be a positive number of pixels",
            option="size",
            value=size,
            valid=("a positive number of pixels",),
        )
    _check_pixels(size)
    image = read_image(path_or_url)
    transforms = _weights(weights).transforms() if weights is not None else None
    if transforms is not None and normalize:
        prepared: torch.Tensor = transforms(image)
        return prepared.unsqueeze(0)
    crop = _crop_size(transforms, size)
    image = TF.center_crop(TF.resize(image, _resize_size(transforms, crop)), [crop, crop])
    tensor: torch.Tensor = TF.pil_to_tensor(image).float() / 255
    if normalize:
        tensor = TF.normalize(tensor, IMAGENET_MEAN, IMAGENET_STD)
    return tensor.unsqueeze(0)


def read_image(path_or_url: str | Path | Image | None = None) -> Image:
    """The image at ``path_or_url`` (or the default photo) as an RGB PIL image.

    An opened PIL image is only converted to RGB: read a URL once, then pass the
    image to :func:`load_image` as often as needed.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(path_or_url, Image.Image):
        source: str | Path = "the image"
        image: Image.Image = path_or_url
    elif path_or_url is not None and not isinstance(path_or_url, (str, os.PathLike)):
        raise ImageError(
            f"cannot read an image from a {type(path_or_url).__name__}; pass a file, an "
            "http(s) URL or a PIL image (a tensor or array is an input already: pass it to "
            "fxmaps.analyze or fxmaps.extract as it is)"
        )
    else:
        source = DEFAULT_IMAGE if path_or_url is None else path_or_url
        data = _download(str(source)) if _is_url(source) else _read_file(Path(source))
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Image.DecompressionBombError as err:
            raise ImageError(
                f"{str(source)!r} is larger than PIL opens ({err}); shrink the file, or raise "
                "PIL.Image.MAX_IMAGE_PIXELS if it is a picture you trust",
                source=str(source),
            ) from err
        except UnidentifiedImageError as err:
            raise ImageError(
                f"{str(source)!r} is not an image fxmaps can read (PNG, JPEG, ...)",
                source=str(source),
            ) from err
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageError(
                f"{str(source)!r} is truncated or corrupt: {err}", source=str(source)
            ) from err
    if image.mode != "RGB":
        warnings.warn(
            f"{str(source)!r} is a {image.mode} image; converted to RGB",
            FxmapsWarning,
            stacklevel=3,
        )
        image = image.convert("RGB")
    return image


def _check_pixels(size: int) -> None:
    """Refuse a ``size × size`` crop above PIL's limit against decompression bombs (the
    photo would be resized to it) before PIL is asked to make it."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size * size > limit:
        raise OptionError(
            f"size={size} asks for a {size}×{size} image ({size * size:,} pixels), more than "
            f"PIL's limit of {limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); use a size up to "
            f"{math.isqrt(int(limit))}",
            option="size",
            value=size,
            valid=(f"1 to {math.isqrt(int(limit))}",),
        )


def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise ImageError(f"no image file at {str(path)!r}", source=str(path))
    try:
        return path.read_bytes()
    except OSError as err:
        raise ImageError(
            f"cannot read {str(path)!r}: {err.strerror or err}", source=str(path)
        ) from err


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            return bytes(response.read())
    except (urllib.error.URLError, TimeoutError, ValueError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(err, urllib.error.HTTPError):
            reason = f"HTTP {err.code} {err.reason}"
        raise ImageError(
            f"cannot download {url!r}: {reason}. Check the address and the internet "
            "connection, or pass a local file",
            source=url,
        ) from err


def _weights(weights: Any) -> Any:
    if isinstance(weights, str):
        try:
            return torchvision.models.get_weight(weights)
        except (KeyError, ValueError, AttributeError) as err:
            raise OptionError(
                f"weights={weights!r} names no torchvision weights; use a name like "
                "'ResNet18_Weights.IMAGENET1K_V1'",
                option="weights",
                value=weights,
            ) from err
    return weights


def _crop_size(transforms: Any, size: int) -> int:
    crop = getattr(transforms, "crop_size", None)
    return int(crop[0]) if isinstance(crop, (list, tuple)) and crop else size


def _resize_size(transforms: Any, crop: int) -> list[int]:
    resize = getattr(transforms, "resize_size", None)
    return [int(resize[0])] if isinstance(resize, (list, tuple)) and resize else [crop]
