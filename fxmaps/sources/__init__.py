"""Where inputs come from: models by name, images, datasets."""

from fxmaps.sources.datasets import Digits, ImageFiles, image_dataset
from fxmaps.sources.images import load_image, read_image
from fxmaps.sources.models import LoadedModel, load_model, load_weights

__all__ = [
    "Digits",
    "ImageFiles",
    "LoadedModel",
    "image_dataset",
    "load_image",
    "load_model",
    "load_weights",
    "read_image",
]
