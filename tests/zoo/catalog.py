"""The models of the zoo survey: which ones, how to build them, what input they take.

Five zoos, all with random weights (nothing is downloaded):

* ``classification``: every torchvision classification model;
* ``detection``: the ``.backbone`` of every torchvision detection model;
* ``segmentation``: every torchvision segmentation model, whole and its ``.backbone``;
* ``video``: every torchvision video model;
* ``timm``: :data:`tests.zoo.timm_sample.TIMM_SAMPLE`, small variants of every timm family.

A :class:`ZooModel` is a name and a recipe, so it crosses process boundaries cheaply
(``scripts/zoo_report.py`` builds each model in a worker process). Inputs are one sample,
at a smaller size than the model's default where the model runs on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
import torchvision
from torch import nn

from tests.zoo.timm_sample import TIMM_SAMPLE

__all__ = ["ZOOS", "ZooModel", "build", "build_with_input", "zoo_models"]

ZOOS = ("classification", "detection", "segmentation", "video", "timm")
BACKBONE = ".backbone"
SMALL_IMAGE = 128
"""The side tried first for image models whose default is larger."""
SMALL_TIMM = (128, 112)
"""Sides a timm model of a fixed input size is built for, in turn: 112 suits patch 14."""
SMALL_CLIP = (8, 112, 112)
"""Frames, height, width tried first for video models."""


@dataclass(frozen=True)
class ZooModel:
    """One model of a zoo: ``name`` is the pytest id and the report's row."""

    zoo: str
    name: str

    @property
    def constructor(self) -> str:
        """The name the library builds it by (``fcn_resnet50`` for ``fcn_resnet50.backbone``)."""
        return self.name.removesuffix(BACKBONE)


def zoo_models(zoo: str) -> list[ZooModel]:
    """The models of one zoo, in a stable order. Listing timm's needs no timm install."""
    tv = torchvision.models
    names: list[str]
    if zoo == "classification":
        names = sorted(tv.list_models(module=tv))
    elif zoo == "detection":
        names = [n + BACKBONE for n in sorted(tv.list_models(module=tv.detection))]
    elif zoo == "segmentation":
        whole = sorted(tv.list_models(module=tv.segmentation))
        names = [name for n in whole for name in (n, n + BACKBONE)]
    elif zoo == "video":
        names = sorted(tv.list_models(module=tv.video))
    elif zoo == "timm":
        names = list(TIMM_SAMPLE)
    else:
        raise ValueError(f"unknown zoo {zoo!r}; the zoos are {', '.join(ZOOS)}")
    return [ZooModel(zoo, name) for name in names]


@contextmanager
def _quiet() -> Iterator[None]:
    """Without the init-time warnings of the libraries (weights, deprecated arguments)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def build(entry: ZooModel, **kwargs: Any) -> nn.Module:
    """The model with random weights, in eval mode; ``kwargs`` go to its constructor."""
    torch.manual_seed(0)
    with _quiet():
        model = _constructor(entry, kwargs)()
    if entry.name.endswith(BACKBONE):
        model = model.get_submodule("backbone")
    return model.eval()


def build_with_input(entry: ZooModel) -> tuple[nn.Module, torch.Tensor]:
    """The model and one input sample, smaller than the default where the model allows it.

    A timm model of a fixed input size (position embeddings, attention windows) is
    built for the sides of :data:`SMALL_TIMM` when its constructor takes ``img_size``.
    """
    for side in SMALL_TIMM if entry.zoo == "timm" else ():
        try:
            model = build(entry, img_size=side)
        except TypeError:  # a constructor without `img_size`
            break
        except Exception:  # a size it cannot be built for
            continue
        small = (_default_shape(entry, model)[0], side, side)
        if _runs_on(model, small):
            return model, _sample(small)
    model = build(entry)
    default = _default_shape(entry, model)
    for shape in _smaller_shapes(entry, model, default):
        if _runs_on(model, shape):
            return model, _sample(shape)
    return model, _sample(default)


def _constructor(entry: ZooModel, kwargs: dict[str, Any]) -> Callable[[], nn.Module]:
    name = entry.constructor
    if entry.zoo == "timm":
        import timm

        return lambda: timm.create_model(name, pretrained=False, **kwargs)
    kwargs = {"weights": None, **kwargs}
    if entry.zoo in ("detection", "segmentation"):
        kwargs["weights_backbone"] = None
    return lambda: torchvision.models.get_model(name, **kwargs)


def _sample(shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, *shape, generator=generator)


def _default_shape(entry: ZooModel, model: nn.Module) -> tuple[int, ...]:
    if entry.zoo == "timm":
        config = cast(dict[str, Any], model.pretrained_cfg)
        return tuple(int(d) for d in config["input_size"])
    if entry.zoo == "video":
        return (3, 16, 224, 224)
    if entry.zoo == "detection" and "320" in entry.name:
        return (3, 320, 320)
    if entry.zoo == "detection" and "300" in entry.name:
        return (3, 300, 300)
    if isinstance(model, torchvision.models.VisionTransformer):
        return (3, model.image_size, model.image_size)
    if entry.zoo == "classification":
        transforms = torchvision.models.get_model_weights(entry.name).DEFAULT.transforms()
        side = int(transforms.crop_size[0])
        return (3, side, side)
    return (3, 224, 224)


def _smaller_shapes(
    entry: ZooModel, model: nn.Module, default: tuple[int, ...]
) -> list[tuple[int, ...]]:
    if entry.zoo == "video":
        return [(3, *SMALL_CLIP)]
    if entry.zoo == "classification" and isinstance(model, torchvision.models.VisionTransformer):
        return []  # position embeddings of a fixed size
    channels, height, width = default
    if max(height, width) <= SMALL_IMAGE:
        return []
    return [(channels, SMALL_IMAGE, SMALL_IMAGE)]


def _runs_on(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether one forward pass on an input of ``shape`` succeeds."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except Exception:
        return False
    return True
