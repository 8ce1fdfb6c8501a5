"""Bad input, tried systematically: each case raises an fxmaps error that says what is wrong
and what to do, leaves the model as it was and leaves no file behind; on the command line
each prints one line and exits with 2.

This is the home of bad-input tests for the public API (``CASES``) and the command line
(``COMMANDS``, ``ARGUMENTS``): a new one goes into a table here.

Expected numbers come from oracles (the model's own forward pass, forward hooks, the
state dicts, the maps actually extracted), not from fxmaps's own answers.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

import fxmaps
from fxmaps.cli import main
from fxmaps.extract.memory import estimate_bytes
from fxmaps.extract.transforms import map_options
from fxmaps.sources.images import DEFAULT_IMAGE
from fxmaps.sources.models import load_model, load_weights
from tests import models as toy
from tests.conftest import tv_model
from tests.oracles import (
    assert_unchanged,
    failing_module,
    first_non_finite_module,
    hook_outputs,
    smallest_side,
    snapshot,
)

HERE = "tests.test_bad_input"
memory_module = importlib.import_module("fxmaps.extract.memory")


class Tiny(nn.Module):
    """Two 3×3 convs, each followed by a 2×2 max pool: small inputs run out of pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.pool2 = nn.MaxPool2d(2)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x).relu())).relu())
        return self.head(x.mean((2, 3)))


class Grey(nn.Module):
    """A single-channel model, MNIST style."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Tokens(nn.Module):
    """Takes integer token ids: an integer input is right here."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(ids))


class OwnConversion(nn.Module):
    """Takes ``(N, H, W)`` uint8 pixels and makes ``(N, 1, H, W)`` floats itself: no fix needed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1).float() / 255)


def broken_batchnorm() -> nn.Module:
    """A model whose BatchNorm statistics went bad (a negative running_var): NaN maps."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3))
    model.eval()
    with torch.no_grad():
        model[2].running_var.fill_(-1.0)  # type: ignore[operator]
    return model


def needs_arguments(width: int) -> nn.Module:
    return nn.Conv2d(3, width, 1)


def raises_when_built() -> nn.Module:
    raise RuntimeError("no config file found")


def returns_a_tensor() -> torch.Tensor:
    return torch.zeros(1)


NOT_A_FACTORY = 42


def exits_when_built() -> nn.Module:
    sys.exit(5)


def scripted() -> nn.Module:
    """A factory that returns a TorchScript module (the original's code is gone)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        return cast(nn.Module, torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())))


def traced() -> nn.Module:
    net = toy.CifarResNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        return cast(nn.Module, torch.jit.trace(net, X[:1]))  # type: ignore[no-untyped-call]


class CompiledBody(nn.Module):
    """A model that compiled one of its parts (``torch.compile`` compiles when called)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.body = cast(nn.Module, torch.compile(nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))


class HungryConv(nn.Conv2d):
    """A conv whose kernel asks the allocator for far more memory than there is (4 PiB):
    the allocation failure is torch's own."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        scratch = torch.empty(1 << 50, dtype=torch.float32)
        return super()._conv_forward(input, weight, bias) + scratch[:1]


class Hungry(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = HungryConv(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).relu()


def _rgb_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))


class OddSizes(Dataset[torch.Tensor]):
    """100 images of 3×16×16, but item 57 is 3×20×20 (a photo that missed the resize)."""

    def __len__(self) -> int:
        return 100

    def __getitem__(self, index: int) -> torch.Tensor:
        side = 20 if index == 57 else 16
        return torch.rand(3, side, side, generator=torch.Generator().manual_seed(index))


def files(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (``None`` for a folder)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


# -------------------------------------------------------------------------------- the API table


@dataclass(frozen=True)
class Case:
    """A call that must fail: ``run(model, folder)``, the error and its message.

    ``model`` builds the model that is passed in and checked bit for bit afterwards
    (``None``: the call takes no model). ``setup`` writes input files into the folder
    first; afterwards the folder holds them, unchanged, and nothing else. ``facts`` are
    attributes the error must carry, by name; ``{folder}`` in a string value stands for
    the folder.
    """

    run: Callable[[Any, Path], object]
    error: type[Exception]
    match: str
    model: Callable[[], Any] | None = None
    setup: Callable[[Path], None] | None = None
    facts: dict[str, object] = field(default_factory=dict)


X = torch.randn(2, 3, 32, 32)


def _analyze(x: Any, **options: Any) -> Callable[[Any, Path], object]:
    return lambda model, _: fxmaps.analyze(model, x, **options)


def _extract(x: Any, **options: Any) -> Callable[[Any, Path], object]:
    return lambda model, _: fxmaps.extract(model, x, **options)


def _on_graph(x: Any, **options: Any) -> Callable[[Any, Path], object]:
    return lambda model, _: fxmaps.extract(fxmaps.analyze(model), x, **options)


def _extractor(x: Any, **options: Any) -> Callable[[Any, Path], object]:
    return lambda model, _: fxmaps.FeatureExtractor(fxmaps.analyze(model), **options)(x)


def _graph(x: Any, call: Callable[[fxmaps.ModelGraph], object]) -> Callable[[Any, Path], object]:
    """Analyse the model (with example input ``x``), then ``call`` the graph."""
    return lambda model, _: call(fxmaps.analyze(model, x))


R64 = torch.zeros(1, 3, 64, 64)
"""resnet18's example input where the graph's own tests use one."""


def resnet18() -> nn.Module:
    return tv_model("resnet18")


def _render(**options: Any) -> Callable[[Any, Path], object]:
    """render_graph of the model analysed on :data:`R64`."""
    return _graph(R64, lambda graph: fxmaps.render_graph(graph, **options))


def _filters(**options: Any) -> Callable[[Any, Path], object]:
    return lambda model, _: fxmaps.plot_filters(model, **options)


def _draw(
    function: Callable[..., object], thing: Any, **options: Any
) -> Callable[[Any, Path], object]:
    """A drawing function called on something that is not a model."""
    return lambda _, __: function(thing, **options)


class Strings(Dataset[str]):
    """A dataset of captions, not images."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> str:
        return "a photo"


def _samples() -> TensorDataset:
    return toy.dead_channel_cnn()[1]


def _top_images(name: str, **options: Any) -> Callable[[Any, Path], object]:
    """plot_top_images of the dead-channel CNN's statistics (nodes 0 and 3, top 5)."""

    def run(model: nn.Module, _: Path) -> object:
        stats = fxmaps.channel_stats(model, _samples(), layers=["0", "3"], topk=5, progress=False)
        return fxmaps.plot_top_images(stats, _samples(), name, **options)

    return run


def _dead_channel_cnn() -> nn.Module:
    return toy.dead_channel_cnn()[0]


def _channel_stats(
    data: Callable[[], Any] = _samples, **options: Any
) -> Callable[[Any, Path], object]:
    return lambda model, _: fxmaps.channel_stats(model, data(), progress=False, **options)


def _write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def _save(name: str, make: Callable[[], object]) -> Callable[[Path], None]:
    return lambda folder: torch.save(make(), folder / name)


def _truncated(folder: Path) -> None:
    torch.save(toy.CifarResNet().state_dict(), folder / "w.pt")
    data = (folder / "w.pt").read_bytes()
    (folder / "w.pt").write_bytes(data[: len(data) // 2])


def _weights(name: str) -> Callable[[Any, Path], object]:
    return lambda model, folder: load_weights(model, folder / name)


def _spec(text: str) -> Callable[[Any, Path], object]:
    return lambda _, folder: load_model(text.format(folder=folder))


def _save_maps(target: str) -> Callable[[Any, Path], object]:
    def run(model: nn.Module, folder: Path) -> None:
        maps = fxmaps.extract(model, X)
        maps.save(folder / target)

    return run


def _small_maps() -> fxmaps.FeatureMaps:
    """Maps of two convs, the first with a channel selection, as a user would save them."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    return fxmaps.extract(model, torch.randn(1, 3, 8, 8), layers=["0", "2"], channels=[0, 1])


def _edited_maps(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """Setup: ``m.pt`` saved by :meth:`FeatureMaps.save`, then its content edited."""

    def setup(folder: Path) -> None:
        _small_maps().save(folder / "m.pt")
        content = torch.load(folder / "m.pt", weights_only=True)
        edit(content)
        torch.save(content, folder / "m.pt")

    return setup


def _edited_header(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """Setup: ``m.safetensors`` saved by :meth:`FeatureMaps.save`, then its JSON header
    edited (the header is a little-endian length and JSON, then the tensors' bytes)."""

    def setup(folder: Path) -> None:
        pytest.importorskip("safetensors", reason="safetensors is optional")
        path = folder / "m.safetensors"
        _small_maps().save(path)
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        edit(header)
        text = json.dumps(header).encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size :])

    return setup


def _edited_stats(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """Setup: ``s.pt`` saved by :meth:`ChannelStats.save`, then its content edited."""

    def setup(folder: Path) -> None:
        stats = fxmaps.channel_stats(
            _dead_channel_cnn(), _samples(), layers=["0"], topk=2, progress=False
        )
        stats.save(folder / "s.pt")
        content = torch.load(folder / "s.pt", weights_only=True)
        edit(content)
        torch.save(content, folder / "s.pt")

    return setup


def _load_maps(name: str) -> Callable[[Any, Path], object]:
    return lambda _, folder: fxmaps.FeatureMaps.load(folder / name)


def _load_stats(_: Any, folder: Path) -> object:
    return fxmaps.ChannelStats.load(folder / "s.pt")


def _diagonal_layout(header: dict[str, Any]) -> None:
    """Edit: the first layer record's layout made one that does not exist."""
    meta = json.loads(header["__metadata__"]["fxmaps"])
    meta["layers"][0]["layout"] = "diagonal"
    header["__metadata__"]["fxmaps"] = json.dumps(meta)


def _conv1_channels() -> str:
    """Oracle for the wrong-channels message: the first conv's own in_channels."""
    conv = toy.CifarResNet().conv1
    return rf"it expects {conv.in_channels} input channels, shape \(N, {conv.in_channels}, H, W\)"


def _too_small(x: torch.Tensor) -> str:
    model = Tiny()
    node, side = failing_module(model, x), smallest_side(model)
    kind = type(model.get_submodule(node)).__name__
    return rf"node '{node}' \({kind}\).*needs an input of at least {side}×{side}"


# Bad options of the drawing functions: name, options, message.
FILTER_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("rgb", {"mode": "rgb"}, r"mode='rgb' needs 2-D kernels over 3 input channels"),
    ("mode", {"mode": "color"}, r"mode='color' is not valid; use one of 'auto', 'rgb'"),
    ("max-filters", {"max_filters": 0}, r"max_filters=0"),
    ("cmap", {"cmap": "RdBu_rr"}, r"cmap='RdBu_rr'"),
]

MAP_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "order",
        {"order": "random"},
        r"order='random' is not valid; use one of 'index', 'energy'",
    ),
    (
        "normalize",
        {"normalize": "global"},
        r"normalize='global' is not valid; use one of 'per-map', 'shared'",
    ),
    (
        "cmap",
        {"cmap": "virids"},
        r"cmap='virids' is not a matplotlib colormap; did you mean 'viridis'",
    ),
    ("max-maps", {"max_maps": 0}, r"max_maps=0 is not valid"),
    ("ncols", {"ncols": 0}, r"ncols=0 is not valid"),
]

MOSAIC_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "normalize",
        {"normalize": "global"},
        r"normalize='global'.*'per-map', 'shared', 'none'",
    ),
    ("pad", {"pad": -1}, r"pad=-1"),
    ("ncols", {"ncols": 0}, r"ncols=0"),
]

CASES: dict[str, Case] = {
    # 1. wrong number of channels: the node, the shape it got, the channels it expects
    "channels-analyze": Case(
        _analyze(torch.randn(1, 1, 32, 32)),
        fxmaps.ShapeError,
        rf"node 'conv1' \(Conv2d\) failed on input of shape \(1, 1, 32, 32\); {_conv1_channels()}",
        toy.CifarResNet,
    ),
    "channels-extract": Case(
        _extract(torch.randn(1, 1, 32, 32)),
        fxmaps.ShapeError,
        rf"node 'conv1' \(Conv2d\) failed on input of shape \(1, 1, 32, 32\); {_conv1_channels()}",
        toy.CifarResNet,
    ),
    "channels-resnet18": Case(
        _analyze(torch.randn(1, 1, 64, 64)),
        fxmaps.ShapeError,
        r"node 'conv1' \(Conv2d\) failed on input of shape \(1, 1, 64, 64\); "
        r"it expects 3 input channels, shape \(N, 3, H, W\)",
        resnet18,
    ),
    "features-of-a-linear": Case(
        _analyze((torch.randn(1, 3, 8, 8), torch.randn(1, 5))),
        fxmaps.ShapeError,
        r"'meta' \(Linear\).*expects 6 input features",
        toy.TwoInputs,
    ),
    # 2. too small: where it collapses, and the smallest size that works
    "too-small-analyze": Case(
        _analyze(torch.randn(1, 3, 6, 6)),
        fxmaps.ShapeError,
        _too_small(torch.randn(1, 3, 6, 6)),
        Tiny,
    ),
    "too-small-extract": Case(
        _extract(torch.randn(2, 3, 6, 6)),
        fxmaps.ShapeError,
        _too_small(torch.randn(2, 3, 6, 6)),
        Tiny,
    ),
    "too-small-extract-all": Case(
        _extract(torch.randn(2, 3, 8, 8), layers="*"),
        fxmaps.ShapeError,
        _too_small(torch.randn(2, 3, 8, 8)),
        Tiny,
    ),
    "too-small-extractor": Case(
        _extractor(torch.randn(2, 3, 5, 9)), fxmaps.ShapeError, r"input \(5×9\) is too small", Tiny
    ),
    "too-small-vgg11": Case(
        _analyze(torch.randn(1, 3, 16, 16)),
        fxmaps.ShapeError,
        r"node 'features.20' \(MaxPool2d\).*\(1, 512, 1, 1\)",
        lambda: tv_model("vgg11"),
    ),
    # 3. a missing batch dimension that cannot be added without guessing
    "one-channel-3d": Case(
        _analyze(torch.randn(1, 32, 32)),
        fxmaps.ShapeError,
        r"input 0 of shape \(1, 32, 32\) is ambiguous: conv 'conv1' \(Conv2d\) takes "
        r"\(N, 3, H, W\)",
        toy.CifarResNet,
    ),
    "channels-last": Case(
        _extract(torch.randn(32, 32, 3)),
        fxmaps.ShapeError,
        r"looks like one channels-last image: use x.movedim\(-1, 0\).unsqueeze\(0\)",
        toy.CifarResNet,
    ),
    "grey-batch": Case(
        _analyze(torch.randn(4, 28, 28)),
        fxmaps.ShapeError,
        r"for a batch of single-channel samples add the channel axis: x.unsqueeze\(1\)",
        Grey,
    ),
    "two-dims": Case(
        _extract(torch.randn(32, 32)),
        fxmaps.ShapeError,
        r"has 2 dimensions but conv 'conv1' .* lacks more than the batch dimension",
        toy.CifarResNet,
    ),
    # 4. not tensors, or not floating point
    "list-of-numbers": Case(
        _analyze([1.0, 2.0]),
        fxmaps.InputError,
        r"got a list of float; make it a tensor first",
        toy.CifarResNet,
    ),
    "file-name": Case(
        _extract("cat.jpg"),
        fxmaps.InputError,
        r"load it first: fxmaps.load_image\('cat.jpg'\)",
        toy.CifarResNet,
    ),
    "pil-image": Case(
        _extract(Image.new("RGB", (8, 8))),
        fxmaps.InputError,
        r"got Image; turn the image into a batch with fxmaps.load_image",
        toy.CifarResNet,
    ),
    "dict-of-other-names": Case(
        _analyze({"image": X}),
        fxmaps.InputError,
        r"the keys of example_input \('image'\) are not arguments of CifarResNet.forward "
        r"\(x\); pass \{'x': \.\.\.\}",
        toy.CifarResNet,
    ),
    "empty-tuple": Case(
        _analyze(()),
        fxmaps.InputError,
        r"example_input must be a tensor, a tuple of positional arguments, a dict of keyword "
        r"arguments or fxmaps.Inputs\(args, kwargs\), got an empty tuple",
        toy.CifarResNet,
    ),
    "uint8-tensor": Case(
        _analyze(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)),
        fxmaps.InputError,
        r"input 0 is a torch.uint8 tensor, but conv 'conv1', the first layer it reaches, "
        r"computes in torch.float32. Convert it to float and normalise it, for example "
        r"x.float\(\) / 255",
        toy.CifarResNet,
    ),
    "uint8-numpy-photo": Case(
        _extract(np.zeros((32, 32, 3), dtype=np.uint8)),
        fxmaps.InputError,
        r"is a torch.uint8 tensor.*fxmaps.load_image\(path\) does both",
        toy.CifarResNet,
    ),
    "bool-extractor": Case(
        _extractor(torch.ones(1, 3, 8, 8, dtype=torch.bool)),
        fxmaps.InputError,
        r"is a torch.bool tensor",
        toy.CifarResNet,
    ),
    "complex-array": Case(
        _extract(np.zeros((1, 3, 8, 8), dtype=np.complex64)),
        fxmaps.InputError,
        r"is a torch.complex64 tensor, .*pass real values, for example x.real or x.abs\(\)",
        toy.CifarResNet,
    ),
    "object-array": Case(
        _analyze(np.array([None, 1])),
        fxmaps.InputError,
        r"a NumPy array of dtype object cannot be made a tensor",
        toy.CifarResNet,
    ),
    "list-of-ints": Case(
        _analyze([1, 2]),
        fxmaps.InputError,
        r"example_input must hold at least one tensor, got a list of int",
        toy.CifarResNet,
    ),
    "string": Case(
        _analyze("image"),
        fxmaps.InputError,
        r"example_input must be a tensor, a tuple of positional arguments, a dict of keyword "
        r"arguments or fxmaps.Inputs\(args, kwargs\), got str",
        toy.CifarResNet,
    ),
    "tensor-and-int": Case(
        _analyze([torch.zeros(1), 3]),
        fxmaps.InputError,
        r"CifarResNet.forward takes 1 positional inputs \(x\), but the example input has 2",
        toy.CifarResNet,
    ),
    "lambda-for-a-model": Case(
        lambda _, __: fxmaps.analyze(lambda x: x),  # type: ignore[arg-type]
        fxmaps.InputError,
        r"needs a torch.nn.Module, got a lambda function",
    ),
    # 5. devices (meta stands in for another device)
    "input-on-meta": Case(
        _analyze(torch.randn(1, 3, 8, 8, device="meta")),
        fxmaps.DeviceError,
        r"example input 0 is on meta but the model's parameters are on cpu; move the input "
        r"with .to\('cpu'\)",
        toy.CifarResNet,
    ),
    "input-on-meta-extract": Case(
        _on_graph(torch.randn(1, 3, 8, 8, device="meta")),
        fxmaps.DeviceError,
        r"input 0 is on meta but the model's parameters are on cpu",
        toy.CifarResNet,
    ),
    "model-on-meta": Case(
        _analyze(X),
        fxmaps.DeviceError,
        r"parameters are on the meta device: they hold no values.*model.to_empty",
        lambda: toy.CifarResNet().to("meta"),
    ),
    "model-on-meta-extract": Case(
        _extract(torch.randn(1, 3, 8, 8, device="meta")),
        fxmaps.DeviceError,
        r"CifarResNet's parameters are on the meta device and hold no values, so it has no "
        r"maps",
        lambda: toy.CifarResNet().to("meta"),
        facts={"got": "meta"},
    ),
    "maps-device-option": Case(
        _extract(X, device="nowhere:0"),
        fxmaps.OptionError,
        r"device='nowhere:0' is not a device",
        toy.CifarResNet,
        facts={"option": "device", "value": "nowhere:0"},
    ),
    "maps-device-option-extractor": Case(
        _extractor(X, device="bogus"),
        fxmaps.OptionError,
        r"device='bogus' is not a device; use for example 'cpu'",
        toy.CifarResNet,
        facts={"option": "device", "value": "bogus"},
    ),
    # 7. an empty selection says which kinds there are
    "empty-list": Case(
        _on_graph(X, layers=[]),
        fxmaps.OptionError,
        r"layers=\[\] selects nothing; pass a kind, node names or glob patterns. The kinds "
        r"CifarResNet has are: .*conv \(7\)",
        toy.CifarResNet,
        facts={"option": "layers", "value": []},
    ),
    "absent-kind": Case(
        _extract(X, layers="attention"),
        fxmaps.OptionError,
        r"selects no node of CifarResNet; the kinds it has are: .*downsample \(2\)",
        toy.CifarResNet,
        facts={"option": "layers", "value": "attention"},
    ),
    # 8. a name that does not exist: close matches
    "unknown-name": Case(
        _extract(X, layers=["layer1.0.conv9"]),
        fxmaps.NodeNotFoundError,
        r"'layer1.0.conv9'.*'layer1.0.conv1'",
        toy.CifarResNet,
        facts={"name": "layer1.0.conv9"},
    ),
    "unknown-pattern": Case(
        _extractor(X, layers="layer9.*"),
        fxmaps.NodeNotFoundError,
        r"pattern 'layer9.\*' matches no node",
        toy.CifarResNet,
        facts={"name": "layer9.*"},
    ),
    "unknown-kind": Case(
        _graph(R64, lambda graph: graph.layers("convs")),
        fxmaps.NodeNotFoundError,
        r"no node named 'convs' .* It is not a kind either; kinds are: activation, add, "
        r"attention, concat, conv",
        resnet18,
    ),
    "unknown-node": Case(
        _graph(R64, lambda graph: graph["layer1.0.conv9"]),
        fxmaps.NodeNotFoundError,
        r"'layer1.0.conv9'.*'layer1.0.conv1'",
        resnet18,
    ),
    "unknown-fx-node": Case(
        _graph(R64, lambda graph: graph.fx_node("layer1.0.conv9")),
        KeyError,
        r"did you mean",
        resnet18,
    ),
    "unknown-map": Case(
        lambda model, _: fxmaps.extract(
            fxmaps.analyze(model, torch.randn(2, 3, 16, 16)),
            torch.randn(2, 3, 16, 16),
            layers=["layer2.*", "linear"],
            channels="top:3",
        )["layer2.0.conv9"],
        fxmaps.NodeNotFoundError,
        r"no map named 'layer2.0.conv9'.*'layer2.0.conv1'",
        toy.CifarResNet,
    ),
    "unknown-highlight": Case(
        _render(highlight=["layer1.0.conv"]),
        fxmaps.NodeNotFoundError,
        r"did you mean .*'layer1\.0\.conv1'",
        resnet18,
    ),
    # 10. path:Name specifications
    "missing-file": Case(
        _spec("{folder}/nope.py:Net"),
        fxmaps.ModelLoadError,
        r"model file '.*nope.py' does not exist",
        facts={"spec": "{folder}/nope.py:Net"},
    ),
    "syntax-error": Case(
        _spec("{folder}/net.py:Net"),
        fxmaps.ModelLoadError,
        r"importing '.*net.py' failed: SyntaxError at line 2: .*fix the file",
        setup=_write("net.py", "import torch\ndef Net(:\n"),
        facts={"spec": "{folder}/net.py:Net"},
    ),
    "exits-on-import": Case(
        _spec("{folder}/script.py:Net"),
        fxmaps.ModelLoadError,
        r"ran code that exited \(SystemExit: 3\); put the file's script code under "
        r"if __name__ == '__main__'",
        setup=_write("script.py", "import sys\nsys.exit(3)\n"),
        facts={"spec": "{folder}/script.py:Net"},
    ),
    "missing-attribute": Case(
        _spec(f"{HERE}:Tinny"),
        fxmaps.ModelLoadError,
        r"has no attribute 'Tinny'; did you mean Tiny",
        facts={"spec": f"{HERE}:Tinny"},
    ),
    "not-a-module-class": Case(
        _spec(f"{HERE}:Case"),
        fxmaps.ModelLoadError,
        r"is the class Case, which is not an nn.Module",
        facts={"spec": f"{HERE}:Case"},
    ),
    "not-a-factory": Case(
        _spec(f"{HERE}:NOT_A_FACTORY"),
        fxmaps.ModelLoadError,
        r"is of type int, neither an nn.Module class nor a factory function",
        facts={"spec": f"{HERE}:NOT_A_FACTORY"},
    ),
    "factory-arguments": Case(
        _spec(f"{HERE}:needs_arguments"),
        fxmaps.ModelLoadError,
        r"cannot be built without arguments \(width\)",
        facts={"spec": f"{HERE}:needs_arguments"},
    ),
    "factory-raises": Case(
        _spec(f"{HERE}:raises_when_built"),
        fxmaps.ModelLoadError,
        r"building '.*raises_when_built' failed: RuntimeError: no config file found",
        facts={"spec": f"{HERE}:raises_when_built"},
    ),
    "factory-returns-a-tensor": Case(
        _spec(f"{HERE}:returns_a_tensor"),
        fxmaps.ModelLoadError,
        r"returned Tensor, not an nn.Module",
        facts={"spec": f"{HERE}:returns_a_tensor"},
    ),
    # 11. weights files
    "weights-keys": Case(
        _weights("w.pt"),
        fxmaps.ModelLoadError,
        r"missing keys 'conv1.weight'.*unexpected keys 'stem.weight'.*Was the file saved "
        r"from this model\?",
        toy.CifarResNet,
        _save("w.pt", lambda: toy.Conv1dNet().state_dict()),
        facts={"spec": "{folder}/w.pt"},
    ),
    "weights-shapes": Case(
        _weights("w.pt"),
        fxmaps.ModelLoadError,
        r"shape mismatches 'linear.weight' \(10, 32\) in the file, \(5, 32\) in the model",
        lambda: nn.ModuleDict({"linear": nn.Linear(32, 5)}),
        _save(
            "w.pt", lambda: {"linear.weight": torch.zeros(10, 32), "linear.bias": torch.zeros(10)}
        ),
        facts={"spec": "{folder}/w.pt"},
    ),
    "weights-not-a-state-dict": Case(
        _weights("w.pt"),
        fxmaps.ModelLoadError,
        r"holds no state dict \(a mapping of names to tensors\); save one with "
        r"torch.save\(model.state_dict\(\), path\)",
        toy.CifarResNet,
        _save("w.pt", lambda: [1, 2]),
        facts={"spec": "{folder}/w.pt"},
    ),
    "weights-whole-model": Case(
        _weights("w.pt"),
        fxmaps.ModelLoadError,
        r"holds pickled Python objects \(tests.models.CifarResNet\).*torch.save\(model\)",
        toy.CifarResNet,
        _save("w.pt", toy.CifarResNet),
        facts={"spec": "{folder}/w.pt"},
    ),
    "weights-truncated": Case(
        _weights("w.pt"),
        fxmaps.ModelLoadError,
        r"cannot read weights file .*: it is truncated or corrupt",
        toy.CifarResNet,
        _truncated,
        facts={"spec": "{folder}/w.pt"},
    ),
    "weights-text": Case(
        _weights("w.pt"),
        fxmaps.ModelLoadError,
        r"it is not a file written by torch.save",
        toy.CifarResNet,
        _write("w.pt", "hello"),
        facts={"spec": "{folder}/w.pt"},
    ),
    # 12. images
    "image-truncated": Case(
        lambda _, folder: fxmaps.load_image(folder / "cut.jpg"),
        fxmaps.ImageError,
        r"'.*cut.jpg' is truncated or corrupt",
        setup=_write("cut.jpg", DEFAULT_IMAGE.read_bytes()[:3000]),
        facts={"source": "{folder}/cut.jpg"},
    ),
    "image-not-an-image": Case(
        lambda _, folder: fxmaps.load_image(folder / "notes.png"),
        fxmaps.ImageError,
        r"is not an image fxmaps can read",
        setup=_write("notes.png", "not pixels"),
        facts={"source": "{folder}/notes.png"},
    ),
    "image-a-tensor": Case(
        lambda _, __: fxmaps.load_image(X),  # type: ignore[arg-type]
        fxmaps.ImageError,
        r"cannot read an image from a Tensor; .*pass it to fxmaps.analyze",
    ),
    "image-missing": Case(
        lambda _, folder: fxmaps.load_image(folder / "nope.jpg"),
        fxmaps.ImageError,
        r"no image file at '.*nope.jpg'",
    ),
    "image-truncated-later": Case(
        lambda _, folder: fxmaps.load_image(folder / "cut.jpg"),
        fxmaps.ImageError,
        r"is truncated or corrupt",
        setup=_write("cut.jpg", DEFAULT_IMAGE.read_bytes()[:5000]),
    ),
    "image-size": Case(
        lambda _, __: fxmaps.load_image(size=0),
        fxmaps.OptionError,
        r"size=0 must be a positive number",
    ),
    "image-weights": Case(
        lambda _, __: fxmaps.load_image(weights="Nope_Weights.X"),
        fxmaps.OptionError,
        r"weights='Nope_Weights.X' names no torchvision",
    ),
    # 13. output paths
    "output-missing-folder": Case(
        _save_maps("missing/maps.pt"),
        fxmaps.OutputError,
        r"folder '.*missing' does not exist; create it first",
        toy.CifarResNet,
        facts={"path": "{folder}/missing/maps.pt"},
    ),
    "output-parent-is-a-file": Case(
        _save_maps("notes.txt/maps.pt"),
        fxmaps.OutputError,
        r"'.*notes.txt' is a file, not a folder",
        toy.CifarResNet,
        _write("notes.txt", "x"),
        facts={"path": "{folder}/notes.txt/maps.pt"},
    ),
    "output-is-a-folder": Case(
        lambda model, folder: fxmaps.extract(model, X).save(folder),
        fxmaps.OutputError,
        r"it is a folder; name a file in it",
        toy.CifarResNet,
        facts={"path": "{folder}"},
    ),
    "save-graph-missing-folder": Case(
        lambda model, folder: fxmaps.save_graph(
            fxmaps.render_graph(fxmaps.analyze(model, torch.zeros(1, 3, 16, 16))),
            folder / "missing" / "model.svg",
        ),
        fxmaps.OutputError,
        r"folder .*missing.* does not exist",
        toy.CifarResNet,
    ),
    "save-graph-suffix": Case(
        lambda model, folder: fxmaps.save_graph(
            fxmaps.render_graph(fxmaps.analyze(model, torch.zeros(1, 3, 16, 16))),
            folder / "model.jpeg",
        ),
        fxmaps.OptionError,
        r"'.*model\.jpeg'.*\.svg \.png \.pdf \.dot \.gv",
        toy.CifarResNet,
    ),
    # 14. maps that would not fit
    "memory-limit": Case(
        _extract(X, max_bytes=1000),
        fxmaps.MemoryLimitError,
        r"the 7 maps asked for would take about .* for a batch of 2, more than the limit of "
        r"1000 B \(max_bytes=1000\); the largest: 'conv1' .*channels='top:16'.*reduce='mean'.*"
        r"dtype=torch.float16.*max_bytes=",
        toy.CifarResNet,
        facts={"limit": 1000},
    ),
    "memory-limit-extractor": Case(
        _extractor(X, max_bytes=10),
        fxmaps.MemoryLimitError,
        r"more than the limit of 10 B",
        toy.CifarResNet,
        facts={"limit": 10},
    ),
    "memory-limit-report": Case(
        lambda model, folder: fxmaps.report(model, X[:1], folder / "r.html", max_bytes=1000),
        fxmaps.MemoryLimitError,
        r"the 7 maps asked for would take about .* for a batch of 1, more than the limit of "
        r"1000 B \(max_bytes=1000\)",
        toy.CifarResNet,
        facts={"limit": 1000},
    ),
    "memory-limit-negative": Case(
        _extractor(X, max_bytes=-1),
        fxmaps.OptionError,
        r"max_bytes=-1 must be a number of bytes >= 0",
        toy.CifarResNet,
        facts={"option": "max_bytes", "value": -1},
    ),
    "memory-limit-a-size": Case(
        _extract(X, max_bytes="1K"),  # a size as --max-bytes takes it: 1024 bytes
        fxmaps.MemoryLimitError,
        r"more than the limit of 1.0 KiB \(max_bytes=1024\)",
        toy.CifarResNet,
        facts={"limit": 1024},
    ),
    "memory-limit-not-a-size": Case(
        _extract(X, max_bytes="lots"),
        fxmaps.OptionError,
        r"max_bytes='lots' must be a number of bytes >= 0, a size like '512M' or '2G'",
        toy.CifarResNet,
        facts={"option": "max_bytes", "value": "lots"},
    ),
    "memory-limit-a-bool": Case(
        _extractor(X, max_bytes=True),
        fxmaps.OptionError,
        r"max_bytes=True must be a number of bytes >= 0",
        toy.CifarResNet,
        facts={"option": "max_bytes", "value": True},
    ),
    "layers-none": Case(
        _extract(X, layers=None),
        fxmaps.InputError,
        r"layers=None \(NoneType\) selects nothing: pass a kind \('conv'\), node names",
        toy.CifarResNet,
        facts={"argument": "layers", "got": "NoneType"},
    ),
    "layers-a-number": Case(
        _extractor(X, layers=123),
        fxmaps.InputError,
        r"layers=123 \(int\) selects nothing",
        toy.CifarResNet,
        facts={"argument": "layers", "got": "int"},
    ),
    "layers-a-number-stats": Case(
        lambda model, _: fxmaps.channel_stats(
            model, _samples(), layers=cast(Any, 7), progress=False
        ),
        fxmaps.InputError,
        r"layers=7 \(int\) selects nothing",
        _dead_channel_cnn,
    ),
    # 15. drawing options and things that cannot be drawn
    **{
        f"graph-collapse-{value}": Case(
            _render(collapse=value),
            fxmaps.OptionError,
            r"is not valid; use 'none', 'blocks' or",
            resnet18,
        )
        for value in ("all", "Blocks", 0, -2, True, 1.5, None)
    },
    "graph-rankdir": Case(
        _render(rankdir="up"), fxmaps.OptionError, r"rankdir='up' .* TB, LR, BT, RL", resnet18
    ),
    "filters-of-a-norm": Case(
        _graph(X[:1], lambda graph: fxmaps.plot_filters(graph["bn1"])),
        fxmaps.InputError,
        r"layer 'bn1' is a norm node \(BatchNorm2d\), not a convolution",
        toy.CifarResNet,
    ),
    "filters-of-an-add": Case(
        _graph(X[:1], lambda graph: fxmaps.plot_filters(graph["layer1.0.add"])),
        fxmaps.InputError,
        r"calls a function, not a module",
        toy.CifarResNet,
    ),
    "filters-of-a-lazy-conv": Case(  # no snapshot: a lazy module's weight holds nothing
        _draw(fxmaps.plot_filters, nn.LazyConv2d(4, 3)),
        fxmaps.InputError,
        r"no weight to draw yet",
    ),
    "filters-of-a-linear": Case(
        _filters(), fxmaps.InputError, r"Linear is not a convolution", lambda: nn.Linear(3, 4)
    ),
    "filters-of-a-matrix": Case(
        _draw(fxmaps.plot_filters, torch.randn(4, 3)),
        fxmaps.InputError,
        r"shaped \(4, 3\); expected conv weights",
    ),
    "filters-of-a-string": Case(
        _draw(fxmaps.plot_filters, "conv1"), fxmaps.InputError, r"cannot draw filters of a str"
    ),
    **{
        f"filters-{name}": Case(
            _filters(**options), fxmaps.OptionError, message, lambda: nn.Conv2d(8, 4, 3)
        )
        for name, options, message in FILTER_OPTIONS
    },
    "maps-sample-out-of-range": Case(
        _draw(fxmaps.plot_feature_maps, torch.rand(3, 4, 40, 40), sample=3),
        fxmaps.OptionError,
        r"sample=3 is out of range for a batch of 3; use 0 to 2",
    ),
    "maps-sample-not-whole": Case(
        _draw(fxmaps.plot_feature_maps, torch.rand(3, 4, 40, 40), sample=1.5),
        fxmaps.OptionError,
        r"sample=1\.5",
    ),
    **{
        f"maps-{name}": Case(
            _draw(fxmaps.plot_feature_maps, torch.rand(2, 4, 4), **options),
            fxmaps.OptionError,
            message,
        )
        for name, options, message in MAP_OPTIONS
    },
    "maps-of-a-list": Case(
        _draw(fxmaps.plot_feature_maps, [[1.0, 2.0]]), fxmaps.InputError, r"cannot draw a list"
    ),
    "maps-of-a-vector": Case(
        _draw(fxmaps.plot_feature_maps, torch.rand(5)),
        fxmaps.InputError,
        r"shaped \(5,\); expected \(N, C, H, W\)",
    ),
    "maps-complex": Case(
        _draw(fxmaps.plot_feature_maps, torch.rand(2, 4, 4, dtype=torch.complex64)),
        fxmaps.InputError,
        r"complex",
    ),
    "mosaic-of-a-matrix": Case(
        _draw(fxmaps.mosaic, np.zeros((3, 4))), fxmaps.InputError, r"\(n, h, w\), not \(3, 4\)"
    ),
    **{
        f"mosaic-{name}": Case(
            _draw(fxmaps.mosaic, np.zeros((2, 3, 3)), **options), fxmaps.OptionError, message
        )
        for name, options, message in MOSAIC_OPTIONS
    },
    "top-images-channels": Case(
        _top_images("3", channels=[9]),
        fxmaps.OptionError,
        r"channels=\[9\]: '3' has channels 0\.\.7",
        _dead_channel_cnn,
    ),
    "top-images-k": Case(
        _top_images("3", k=0), fxmaps.OptionError, r"k=0 must be at least 1", _dead_channel_cnn
    ),
    "top-images-unknown-node": Case(
        _top_images("fc"), fxmaps.InputError, r"no statistics for 'fc'", _dead_channel_cnn
    ),
    # 16. files written by fxmaps, read back
    "maps-file-of-weights": Case(
        lambda _, folder: fxmaps.FeatureMaps.load(folder / "weights.pt"),
        fxmaps.InputError,
        r"is not a feature-maps file written by fxmaps",
        setup=_save("weights.pt", lambda: toy.CifarResNet().state_dict()),
    ),
    "maps-file-missing": Case(
        lambda _, folder: fxmaps.FeatureMaps.load(folder / "missing.pt"),
        fxmaps.InputError,
        r"no feature-maps file at",
    ),
    "stats-file-other": Case(
        lambda _, folder: fxmaps.ChannelStats.load(folder / "other.pt"),
        fxmaps.InputError,
        r"not a file written by ChannelStats.save",
        setup=_save("other.pt", lambda: {"weights": torch.zeros(2)}),
    ),
    "stats-file-missing": Case(
        lambda _, folder: fxmaps.ChannelStats.load(folder / "missing.pt"),
        fxmaps.InputError,
        r"no channel-statistics file at",
    ),
    # files written by fxmaps, then edited: each entry is checked before records are built
    "maps-file-missing-map": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"m.pt' is not a feature-maps file written by fxmaps: the map of '2' is missing",
        setup=_edited_maps(lambda c: c["maps"].pop("2")),
    ),
    "maps-file-extra-map": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"map '9' has no layer record",
        setup=_edited_maps(lambda c: c["maps"].update({"9": torch.zeros(1)})),
    ),
    "maps-file-unknown-kind": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"layer record 0 \('0'\): unknown kind 'teleport'",
        setup=_edited_maps(lambda c: c["layers"][0].update(kind="teleport")),
    ),
    "maps-file-layers-a-number": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"'layers' is a int, not a list of records",
        setup=_edited_maps(lambda c: c.update(layers=5)),
    ),
    "maps-file-layer-without-kind": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"layer record 1 \('2'\) has no 'kind'",
        setup=_edited_maps(lambda c: c["layers"][1].pop("kind")),
    ),
    "maps-file-params-not-a-count": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"layer record 1 \('2'\): 'params' is True",
        setup=_edited_maps(lambda c: c["layers"][1].update(params=True)),
    ),
    "maps-file-str-map": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"the map of '0' is a str, not a tensor",
        setup=_edited_maps(lambda c: c["maps"].update({"0": "pixels"})),
    ),
    "maps-file-another-dtype": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"the map of '2' is \{'dtype': 'torch.float64'.*saved as \{'dtype': 'torch.float32'",
        setup=_edited_maps(lambda c: c["maps"].update({"2": c["maps"]["2"].double()})),
    ),
    "maps-file-float-channels": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"channel selection '0' is not a 1-D tensor of indices",
        setup=_edited_maps(lambda c: c["channels"].update({"0": torch.zeros(2)})),
    ),
    "maps-file-tensor-for-a-name": Case(  # found by tests/test_fuzz.py: a repr over lines
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"layer record 0 \(tensor\(\[\[0\.\], \[0\.\]\]\)\): 'name' is tensor\(\[\[0\.\], "
        r"\[0\.\]\]\)$",
        setup=_edited_maps(lambda c: c["layers"][0].update(name=torch.zeros(2, 1))),
    ),
    "maps-file-skipped-not-names": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"'skipped' is 3, not a list of names",
        setup=_edited_maps(lambda c: c.update(skipped=3)),
    ),
    "maps-safetensors-relabelled-dtype": Case(
        _load_maps("m.safetensors"),
        fxmaps.InputError,
        r"the map of '0' is \{'dtype': 'torch.int32'.*saved as \{'dtype': 'torch.float32'",
        setup=_edited_header(lambda h: h["map/0"].update(dtype="I32")),
    ),
    "maps-safetensors-unknown-key": Case(
        _load_maps("m.safetensors"),
        fxmaps.InputError,
        r"tensor 'zzz' is neither a map/ nor a channel/ entry",
        setup=_edited_header(lambda h: h.update(zzz=h.pop("map/0"))),
    ),
    "maps-safetensors-unknown-layout": Case(
        _load_maps("m.safetensors"),
        fxmaps.InputError,
        r"layer record 0 \('0'\): unknown layout 'diagonal'",
        setup=_edited_header(_diagonal_layout),
    ),
    "stats-file-no-layers": Case(
        _load_stats,
        fxmaps.InputError,
        r"s.pt' is not a file written by ChannelStats.save: 'layers' is a NoneType",
        setup=_edited_stats(lambda c: c.pop("layers")),
    ),
    "stats-file-layers-a-list": Case(
        _load_stats,
        fxmaps.InputError,
        r"'layers' is a list, not a dict by node name",
        setup=_edited_stats(lambda c: c.update(layers=list(c["layers"].values()))),
    ),
    "stats-file-unknown-field": Case(
        _load_stats,
        fxmaps.InputError,
        r"'0' has \['max', 'mean', 'median', .*expected \['max', 'mean', 'positive'",
        setup=_edited_stats(lambda c: c["layers"]["0"].update(median=torch.zeros(4))),
    ),
    "stats-file-int-not-tensor": Case(
        _load_stats,
        fxmaps.InputError,
        r"'0': 'mean' is a int, not a tensor",
        setup=_edited_stats(lambda c: c["layers"]["0"].update(mean=3)),
    ),
    "stats-file-wrong-shape": Case(
        _load_stats,
        fxmaps.InputError,
        r"'0': 'std' has shape \(1,\)",
        setup=_edited_stats(lambda c: c["layers"]["0"].update(std=c["layers"]["0"]["std"][:1])),
    ),
    "stats-file-samples-not-a-count": Case(
        _load_stats,
        fxmaps.InputError,
        r"'samples' is '1797', not a count",
        setup=_edited_stats(lambda c: c.update(samples="1797")),
    ),
    # 17. channel statistics over a dataset
    "stats-unknown-node": Case(
        lambda model, _: fxmaps.channel_stats(
            model, _samples(), layers=["0", "1", "3", "6"], topk=2, progress=False
        )["fc"],
        fxmaps.InputError,
        r"no statistics for 'fc'; these nodes have them",
        _dead_channel_cnn,
    ),
    "stats-empty-dataset": Case(
        _channel_stats(lambda: Subset(_samples(), [])),
        fxmaps.InputError,
        r"the dataset is empty",
        _dead_channel_cnn,
    ),
    "stats-topk": Case(
        _channel_stats(topk=0), fxmaps.OptionError, r"topk=0, batch_size=64", _dead_channel_cnn
    ),
    "stats-score": Case(
        _channel_stats(score="median"),
        fxmaps.OptionError,
        r"score='median'; choose 'max' or 'mean'",
        _dead_channel_cnn,
    ),
    "stats-strings": Case(
        _channel_stats(Strings),
        fxmaps.InputError,
        r"dataset item 0 holds a str, not a tensor",
        _dead_channel_cnn,
    ),
    # 18. a FeatureExtractor takes a graph, or a model that it analyses first
    "extractor-of-a-string": Case(
        lambda _, __: fxmaps.FeatureExtractor("resnet18"),  # type: ignore[arg-type]
        fxmaps.InputError,
        r"^FeatureExtractor\(\) needs a ModelGraph \(from fxmaps.analyze\) or a torch.nn.Module, "
        r"got the string 'resnet18'; build the model first",
        facts={"argument": "graph", "got": "str"},
    ),
    "extractor-of-a-class": Case(
        lambda _, __: fxmaps.FeatureExtractor(toy.CifarResNet),  # type: ignore[arg-type]
        fxmaps.InputError,
        r"got the class CifarResNet instead of a model built from it; pass an instance",
        facts={"argument": "graph", "got": "type"},
    ),
    "extractor-of-a-model": Case(
        lambda model, _: fxmaps.FeatureExtractor(model, "layer1.0.conv9"),
        fxmaps.NodeNotFoundError,
        r"'layer1.0.conv9'.*'layer1.0.conv1'",  # the model's own names: it was analysed
        toy.CifarResNet,
        facts={"name": "layer1.0.conv9"},
    ),
    # 19. a wrapper (DataParallel, DDP, torch.compile) is taken off: the inner model's names
    "wrapped-names": Case(
        lambda model, _: _unwrapped(lambda: fxmaps.extract(model, X, layers=["module.conv1"])),
        fxmaps.NodeNotFoundError,
        r"'module.conv1'.*'conv1'",
        lambda: nn.DataParallel(toy.CifarResNet()),
        facts={"name": "module.conv1"},
    ),
    # issue 17, case 6: a model whose Python code is gone
    "torchscript-traced": Case(
        _analyze(X),
        fxmaps.InputError,
        r"^analyze\(\) needs the Python module, got a TorchScript TopLevelTracedModule \(from "
        r"torch.jit.trace or torch.jit.script\).*pass the original nn.Module",
        traced,
        facts={"argument": "model", "got": "TopLevelTracedModule"},
    ),
    "torchscript-scripted": Case(
        _extract(X),
        fxmaps.InputError,
        r"^extract\(\) needs the Python module, got a TorchScript RecursiveScriptModule",
        scripted,
        facts={"argument": "model", "got": "RecursiveScriptModule"},
    ),
    "torchscript-stats": Case(
        _channel_stats(lambda: TensorDataset(X)),
        fxmaps.InputError,
        r"^channel_stats\(\) needs the Python module, got a TorchScript",
        scripted,
    ),
    # issue 17, case 13: torch.compile on a part of the model
    "compiled-submodule": Case(
        _analyze(X),
        fxmaps.InputError,
        r"CompiledBody's submodule 'body' is a torch.compile OptimizedModule; put the module "
        r"it compiled back, model.body = model.body._orig_mod",
        CompiledBody,
        facts={"argument": "model", "got": "OptimizedModule"},
    ),
    # issue 17, case 13: maps are floats; an integer dtype would truncate them
    **{
        f"maps-dtype-{name}": Case(
            _extract(X, dtype=dtype),
            fxmaps.OptionError,
            rf"dtype={re.escape(repr(dtype))} is not a floating-point dtype: maps are floats.*"
            r"use one of torch.float16, torch.bfloat16, torch.float32, torch.float64",
            toy.CifarResNet,
            facts={"option": "dtype", "value": dtype},
        )
        for name, dtype in [
            ("int8", torch.int8),
            ("uint8", torch.uint8),
            ("int64-text", "int64"),
            ("bool", torch.bool),
            ("complex", torch.complex64),
        ]
    },
    "maps-dtype-extractor": Case(
        _extractor(X, dtype=torch.int32),
        fxmaps.OptionError,
        r"dtype=torch.int32 is not a floating-point dtype",
        toy.CifarResNet,
    ),
    # issue 17, case 13: memory running out, or too many dimensions, is not a channel problem
    "allocation-analyze": Case(
        _analyze(X),
        fxmaps.MemoryLimitError,
        r"^(?!.*input channels)node 'conv' \(HungryConv\) ran out of memory on input of shape "
        r"\(2, 3, 32, 32\): RuntimeError: .*can't allocate memory.*; try a smaller input",
        Hungry,
    ),
    "allocation-extract": Case(
        _on_graph(X),
        fxmaps.MemoryLimitError,
        r"^(?!.*input channels)the model ran out of memory during extraction",
        Hungry,
    ),
    "rank-analyze": Case(
        _analyze(torch.randn(2, 3, 8, 8, 2)),
        fxmaps.ShapeError,
        r"^(?!.*input channels)node 'conv1' \(Conv2d\) failed on input of shape "
        r"\(2, 3, 8, 8, 2\); it expects 4 dimensions \(or 3 for one sample\), "
        r"shape \(N, 3, H, W\)",
        toy.CifarResNet,
    ),
    # issue 17, case 8: a dataset item of another shape is named by its dataset index
    "stats-item-of-another-shape": Case(
        _channel_stats(OddSizes, batch_size=16),
        fxmaps.InputError,
        rf"^dataset item 57 has shape {re.escape(str(tuple(OddSizes()[57].shape)))}, but item "
        rf"{57 // 16 * 16} has {re.escape(str(tuple(OddSizes()[48].shape)))}, and a batch "
        r"needs one shape: .*batch_size=1",
        _rgb_cnn,
        facts={"argument": "dataset"},
    ),
    "stats-item-of-another-shape-workers": Case(
        _channel_stats(OddSizes, batch_size=16, num_workers=1),
        fxmaps.InputError,
        r"^dataset item 57 has shape \(3, 20, 20\), but item 48 has \(3, 16, 16\)",
        _rgb_cnn,
    ),
    # issue 17, case 13: files fxmaps cannot read back say why, in one short clause
    "maps-file-pickle": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"^'.*m.pt' is not a feature-maps file written by fxmaps: it holds pickled Python "
        r"objects \(pathlib.PosixPath\), which fxmaps does not unpickle because that can run "
        r"code$",
        setup=_save("m.pt", lambda: {"maps": Path("x")}),
    ),
    "maps-file-whole-model": Case(
        _load_maps("m.pt"),
        fxmaps.InputError,
        r"it holds pickled Python objects \(tests.models.CifarResNet\), which fxmaps does not "
        r"unpickle",
        setup=_save("m.pt", toy.CifarResNet),
    ),
    "stats-file-pickle": Case(
        _load_stats,
        fxmaps.InputError,
        r"^'.*s.pt' is not a file written by ChannelStats.save: it holds pickled Python objects "
        r"\(tests.models.CifarResNet\)",
        setup=_save("s.pt", toy.CifarResNet),
    ),
    # issue 17, case 13: weights and factories
    "weights-a-folder": Case(
        lambda model, folder: load_weights(model, folder),
        fxmaps.ModelLoadError,
        r"^'.*' is a folder, not a weights file; name the state-dict file in it",
        toy.CifarResNet,
        facts={"spec": "{folder}"},
    ),
    "factory-exits": Case(
        _spec(f"{HERE}:exits_when_built"),
        fxmaps.ModelLoadError,
        r"building '.*exits_when_built' exited \(SystemExit: 5\) instead of returning a model",
        facts={"spec": f"{HERE}:exits_when_built"},
    ),
    # issue 17, case 5: a photo resized past PIL's limit is refused before PIL makes it
    "image-size-over-pil-limit": Case(
        lambda _, __: fxmaps.load_image(size=30000),
        fxmaps.OptionError,
        rf"size=30000 asks for a 30000×30000 image \(900,000,000 pixels\), more than PIL's "
        rf"limit of {Image.MAX_IMAGE_PIXELS:,} pixels",
        facts={"option": "size", "value": 30000},
    ),
    "image-decompression-bomb": Case(
        lambda _, folder: fxmaps.load_image(folder / "bomb.png"),
        fxmaps.ImageError,
        r"'.*bomb.png' is larger than PIL opens \(Image size \(\d+ pixels\) exceeds limit",
        setup=lambda folder: _bomb(folder / "bomb.png"),
    ),
}


def _bomb(path: Path) -> None:
    """A small PNG (a blank 1-bit image compresses well) whose pixel count is over twice
    PIL's limit, where PIL refuses to open it."""
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = math.isqrt(2 * limit) + 100
    Image.new("1", (side, side)).save(path)


def _unwrapped(call: Callable[[], object]) -> object:
    """``call()``, which must say that it took a model out of its wrapper."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return call()
        finally:
            assert any("it uses the model inside" in str(w.message) for w in caught)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ beside test files
    if case.setup is not None:
        case.setup(tmp_path)
    before = files(tmp_path)
    model = case.model() if case.model is not None else None
    model_before = snapshot(model) if model is not None else None  # meta: objects, no values
    with pytest.raises(case.error, match=case.match) as info:
        case.run(model, tmp_path)
    assert isinstance(info.value, fxmaps.FxmapsError)
    assert "\n" not in str(info.value)
    expected = {
        name: value.format(folder=tmp_path) if isinstance(value, str) else value
        for name, value in case.facts.items()
    }
    assert {name: getattr(info.value, name) for name in expected} == expected
    if model is not None and model_before is not None:
        assert_unchanged(model, model_before)
    assert files(tmp_path) == before


# ------------------------------------------------------------------- 9. not a model at all


@pytest.mark.parametrize(
    ("thing", "match"),
    [
        (
            torchvision.models.resnet18,
            r"got the function resnet18; if it builds the model, call "
            r"it and pass the result: resnet18\(\)",
        ),
        (
            toy.CifarResNet,
            r"got the class CifarResNet instead of a model built from it; pass an "
            r"instance: CifarResNet\(\)",
        ),
        (
            torchvision.models.ResNet18_Weights.DEFAULT,
            rf"got the weights ResNet18_Weights.{torchvision.models.ResNet18_Weights.DEFAULT.name} "
            r"instead of a model; build the model with them: torchvision.models.resnet18\(weights=",
        ),
        (
            "resnet18",
            r"got the string 'resnet18'; build the model first, for example "
            r"torchvision.models.get_model\('resnet18'\)",
        ),
        ({"conv.weight": torch.zeros(1)}, r"got a state dict .*model.load_state_dict\(state\)"),
        (lambda x: x, r"got a lambda function; wrap it in an nn.Module"),
        (None, r"got NoneType; build the model first"),
    ],
    ids=["function", "class", "weights", "string", "state-dict", "lambda", "none"],
)
@pytest.mark.parametrize(
    ("caller", "call"),
    [
        ("analyze", lambda thing, _: fxmaps.analyze(thing, X)),
        ("extract", lambda thing, _: fxmaps.extract(thing, X)),
        ("benchmark_extraction", lambda thing, _: fxmaps.benchmark_extraction(thing, X)),
        ("channel_stats", lambda thing, _: fxmaps.channel_stats(thing, TensorDataset(X))),
        ("report", lambda thing, folder: fxmaps.report(thing, X[:1], folder / "r.html")),
        (
            r"FeatureExtractor\(\) needs a ModelGraph \(from fxmaps.analyze\) or",
            lambda thing, _: fxmaps.FeatureExtractor(thing),
        ),
    ],
    ids=["analyze", "extract", "bench", "stats", "report", "extractor"],
)
def test_not_a_model(
    thing: object,
    match: str,
    caller: str,
    call: Callable[[object, Path], object],
    tmp_path: Path,
) -> None:
    caller = caller if "(" in caller else rf"{caller}\(\) needs"
    with pytest.raises(fxmaps.InputError, match=rf"^{caller} a torch.nn.Module, {match}"):
        call(thing, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_graph_is_not_analysed_again() -> None:
    graph = fxmaps.analyze(toy.CifarResNet())
    with pytest.raises(fxmaps.InputError, match=r"got a ModelGraph, which is already analysed"):
        fxmaps.analyze(graph, X)  # type: ignore[arg-type]


# ---------------------------------------------- 19. wrapped models: the model inside, with a note


@contextlib.contextmanager
def _one_process() -> Iterator[None]:
    """A torch.distributed group of this process alone (DistributedDataParallel needs one)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    store = dist.HashStore()  # type: ignore[attr-defined]
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _compiled(model: nn.Module) -> nn.Module:
    return cast(nn.Module, torch.compile(model))  # compiles nothing until called


WRAPPERS: dict[str, tuple[Callable[[nn.Module], nn.Module], str, str]] = {
    "data-parallel": (nn.DataParallel, "DataParallel", "module"),
    "distributed": (
        nn.parallel.DistributedDataParallel,
        "DistributedDataParallel",
        "module",
    ),
    "compiled": (_compiled, "a torch.compile OptimizedModule", "_orig_mod"),
    "both": (lambda m: nn.DataParallel(_compiled(m)), "DataParallel", "module._orig_mod"),
}
"""How to wrap a model, what the note calls the wrapper, and the path to the model."""


@pytest.mark.parametrize("wrapper", WRAPPERS.values(), ids=WRAPPERS.keys())
def test_a_wrapped_model_is_taken_out(wrapper: tuple[Callable[..., nn.Module], str, str]) -> None:
    wrap, label, path = wrapper
    net = toy.CifarResNet().eval()
    expected = [layer.name for layer in fxmaps.analyze(net, X).layers()]
    with _one_process() if label.startswith("Distributed") else contextlib.nullcontext():
        wrapped = wrap(net)
        before = snapshot(wrapped)
        with pytest.warns(fxmaps.FxmapsWarning) as caught:
            graph = fxmaps.analyze(wrapped, X)
        assert_unchanged(wrapped, before)
    note = str(caught[0].message)
    assert re.match(
        rf"analyze\(\) was given {label} around CifarResNet; it uses the model inside, "
        rf"model\.{path} \(the same parameters\), so node names are CifarResNet's own, "
        rf"without '{path}'\. Pass model\.{path} to silence this$",
        note,
    ), note
    assert caught[0].filename == __file__  # the warning points at the caller
    assert graph.model is net
    assert [layer.name for layer in graph.layers()] == expected


CALLERS: dict[str, Callable[[nn.Module, Path], object]] = {
    "analyze": lambda model, _: [layer.name for layer in fxmaps.analyze(model, X).layers()],
    "extract": lambda model, _: dict(fxmaps.extract(model, X, layers="*")),
    "extractor": lambda model, _: dict(fxmaps.FeatureExtractor(model, "*")(X)),
    "stats": lambda model, _: {
        name: stats.mean
        for name, stats in fxmaps.channel_stats(model, TensorDataset(X), progress=False).items()
    },
    "report": lambda model, folder: fxmaps.report(model, X[:1], folder / "r.html").read_text(),
    "bench": lambda model, _: (
        fxmaps.benchmark_extraction(model, X, repeat=1, warmup=0, memory=False).model
    ),
}
"""Every function that takes a model, and what it gives that depends on the model's names."""


@pytest.mark.parametrize("call", CALLERS.values(), ids=CALLERS.keys())
def test_every_function_that_takes_a_model_takes_it_out(
    call: Callable[[nn.Module, Path], object], tmp_path: Path
) -> None:
    net = toy.CifarResNet().eval()
    (tmp_path / "inner").mkdir()
    expected = call(net, tmp_path / "inner")
    with pytest.warns(fxmaps.FxmapsWarning, match=r"given DataParallel around CifarResNet") as w:
        got = call(nn.DataParallel(net), tmp_path)
    assert [warning.filename for warning in w] == [__file__]  # one note, at the caller
    if isinstance(got, str) and got.startswith("<!DOCTYPE"):  # the report: its header
        assert "<title>CifarResNet: fxmaps report</title>" in got
    elif isinstance(got, dict):
        assert got.keys() == expected.keys()  # type: ignore[attr-defined]
        assert all(torch.equal(got[k], expected[k]) for k in got)  # type: ignore[index]
    else:
        assert repr(got) == repr(expected)


# ------------------------------------ 20. names that are markup: drawn and reported, as text

ODD = '<i>"&{x}\\\n'
"""Characters that mean something to DOT, HTML or graphviz's escapes."""


class _OddNames(nn.Module):
    """Module, parameter and (below) class names made of :data:`ODD`; a residual block
    whose name holds a ``:`` (graphviz reads ``a:b`` in an edge as node ``a``, port ``b``)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module(f"stem{ODD}", nn.Conv2d(3, 4, 3, padding=1))
        self.add_module(f"block:{ODD}", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()))
        self.register_parameter(f"scale{ODD}", nn.Parameter(torch.ones(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, f"stem{ODD}")(x)
        x = x + getattr(self, f"block:{ODD}")(x)
        return x * getattr(self, f"scale{ODD}")


def odd_names() -> nn.Module:
    """A model whose class name is markup too (``fxmaps`` commands load it by name)."""
    cls = type(f"<script>alert({ODD})</script>", (_OddNames,), {})
    return cls()


def _svg_titles(svg: str) -> set[str]:
    """The node names of an SVG drawing (its XML must parse)."""
    import xml.etree.ElementTree as ET

    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg)
    found = root.findall(".//svg:g[@class='node']/svg:title", ns)
    return {title.text or "" for title in found}


def _as_dot(name: str) -> str:
    """A name as DOT keeps it: backslashes doubled, line breaks written as ``\\n``."""
    return name.replace("\\", "\\\\").replace("\n", "\\n")


def _drawn(graph: fxmaps.ModelGraph) -> set[str]:
    """The names a drawing shows as nodes (parameters are folded into their users)."""
    names = [layer.name for layer in graph.layers() if layer.kind is not fxmaps.Kind.PARAMETER]
    return {_as_dot(name) for name in names}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
@pytest.mark.parametrize("collapse", ["none", "blocks"])
def test_markup_in_names_is_drawn_as_text(collapse: str) -> None:
    model = odd_names()
    graph = fxmaps.analyze(model, torch.randn(1, 3, 8, 8))
    assert {f"stem{ODD}", f"block:{ODD}.0"} <= set(graph.nx)
    assert graph.layers("parameter")[0].target == f"scale{ODD}"
    svg = fxmaps.render_graph(graph, collapse=collapse).pipe(format="svg", encoding="utf-8")
    assert "<script>" not in svg
    assert "<i>" not in svg
    if collapse == "none":
        assert _svg_titles(svg) == _drawn(graph)
    else:  # the residual block (at the model's root, so named after its merge) is one node
        assert _svg_titles(svg) == {"x", _as_dot(f"stem{ODD}"), "add", "mul", "output"}


def _odd_image(folder: Path) -> Path:
    path = folder / f"cat{ODD}.png"
    Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_markup_in_names_is_reported_as_text(tmp_path: Path) -> None:
    image = _odd_image(tmp_path)
    page = fxmaps.report(odd_names(), image, tmp_path / "r.html").read_text()
    # The page's one script is fxmaps's own, after the content: no name became a script.
    assert page.count("<script") == 1
    assert page.index("<script>") > page.index("</main>")
    assert "<i>" not in page
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    assert _as_dot(f"stem{ODD}") in _svg_titles(svg)
    assert html.escape(str(image)) in page


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_markup_in_names_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, image = f"{HERE}:odd_names", _odd_image(tmp_path)
    size = ("--input-size", "3", "8", "8")
    assert main(["graph", model, *size, "-o", str(tmp_path / "g.svg")]) == 0
    assert _as_dot(f"stem{ODD}") in _svg_titles((tmp_path / "g.svg").read_text())
    argv = ["report", model, *size, "--image", str(image), "-o", str(tmp_path / "r.html")]
    assert main(argv) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count("<script") == 1  # fxmaps's own, after the content
    assert page.index("<script>") > page.index("</main>")
    assert html.escape(str(image)) in page
    assert "error" not in capsys.readouterr().err


# ----------------------- issue 17, case 6: module names fx's generated code cannot hold as such

FX_UNWRITABLE = ['a"b', "a\nb", "a\\b", "a'b", 'x"); import os; ("', "for", "None", "lambda"]
"""ModuleDict keys fx would write into code as they are: quotes, a line break, a backslash,
an injection attempt, Python keywords (``self.d.for``)."""


class _Keyed(nn.Module):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.stem = nn.Conv2d(3, 4, 3)
        self.d = nn.ModuleDict({key: nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d[self.key](self.stem(x)).mean((2, 3))


@pytest.mark.parametrize("key", FX_UNWRITABLE, ids=[repr(k) for k in FX_UNWRITABLE])
def test_module_names_fx_cannot_write_work(key: str) -> None:
    model = _Keyed(key).eval()
    x = torch.randn(2, 3, 12, 12)
    before = snapshot(model)
    maps = fxmaps.extract(model, x, layers="conv")
    seen = hook_outputs(model, x)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(maps) == convs == ["stem", f"d.{key}.0"]
    assert all(torch.equal(maps[name], seen[name][0]) for name in convs)
    graph = fxmaps.analyze(model, x)
    assert graph[f"d.{key}.0"].module is model.get_submodule(f"d.{key}.0")
    assert_unchanged(model, before)


class _ScriptedPart(nn.Module):
    """A Python model with a TorchScript part: the part is one node, its map its output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            self.body = torch.jit.script(nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x)).mean((2, 3))


def test_a_torchscript_part_is_one_node() -> None:
    model = _ScriptedPart().eval()
    x = torch.randn(2, 3, 12, 12)
    graph = fxmaps.analyze(model, x)
    assert graph["body"].module is model.body
    maps = fxmaps.extract(graph, x, layers=["stem", "body"])
    with torch.no_grad():
        stem = model.stem(x)
        assert torch.equal(maps["stem"], stem)
        assert torch.equal(maps["body"], model.body(stem))


# ------------------------------- issue 17, case 13: the console script finds the user's package


def test_the_console_script_imports_packages_of_the_current_folder(tmp_path: Path) -> None:
    """``fxmaps summary pkg.mod:Name`` run from the folder that holds ``pkg``: a console
    script has its own folder on ``sys.path``, not the current one (``python -m`` has it)."""
    project, scripts = tmp_path / "project", tmp_path / "bin"
    (project / "pkg").mkdir(parents=True)
    scripts.mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "mod.py").write_text(
        "from torch import nn\n\n\nclass Name(nn.Sequential):\n"
        "    def __init__(self):\n        super().__init__(nn.Conv2d(3, 5, 3), nn.ReLU())\n"
    )
    launcher = scripts / "fxmaps"  # what pip writes: import the entry point, call it
    launcher.write_text(
        "import os, sys\n"
        "assert all(os.path.abspath(p or '.') != os.getcwd() for p in sys.path), sys.path\n"
        "from fxmaps.cli import main\nsys.exit(main())\n"
    )
    root = Path(fxmaps.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, str(launcher), "summary", "pkg.mod:Name", "--input-size", "3", "8", "8"]
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    conv = nn.Conv2d(3, 5, 3)  # the package's layer, built here as the oracle
    shape = "×".join(map(str, conv(torch.zeros(1, 3, 8, 8)).shape))
    params = sum(p.numel() for p in conv.parameters())
    row = next(line for line in done.stdout.splitlines() if line.split()[:2] == ["0", "conv"])
    assert row.split()[2:5] == ["Conv2d", shape, str(params)]
    assert sorted(p.name for p in project.rglob("*")) == ["__init__.py", "mod.py", "pkg"]


# ------------------------------------------- 3, 4. what is fixed for the user, with a warning


@pytest.mark.parametrize(
    ("model", "given", "meant", "match"),
    [
        (
            toy.CifarResNet,
            torch.randn(3, 16, 16),
            lambda x: x[None],
            r"input 0 of shape \(3, 16, 16\) has no batch dimension: conv 'conv1' \(Conv2d\) "
            r"takes \(N, 3, H, W\); it was taken as one sample of shape \(1, 3, 16, 16\)",
        ),
        (
            Grey,
            torch.randn(1, 12, 12),
            lambda x: x[None],
            r"input 0 of shape \(1, 12, 12\) has no batch dimension: conv 'conv' \(Conv2d\) "
            r"takes \(N, 1, H, W\)",
        ),
        (
            toy.CifarResNet,
            torch.randn(2, 3, 16, 16, dtype=torch.float64),
            lambda x: x.float(),
            r"input 0 is torch.float64 but the model computes in torch.float32; it was converted "
            r"to torch.float32",
        ),
        (
            toy.Conv1dNet,
            torch.randn(2, 64),
            lambda x: x[None],
            r"input 0 of shape \(2, 64\) has no batch dimension: conv '.*' \(Conv1d\) "
            r"takes \(N, 2, L\)",
        ),
    ],
    ids=["chw", "grey", "float64", "conv1d"],
)
def test_fixed_with_a_note(
    model: Callable[[], nn.Module],
    given: torch.Tensor,
    meant: Callable[[torch.Tensor], torch.Tensor],
    match: str,
) -> None:
    net = model().eval()
    before = snapshot(net)
    with pytest.warns(fxmaps.FxmapsWarning, match=rf"^example {match}"):
        graph = fxmaps.analyze(net, given)
    assert graph.input_shapes == (tuple(meant(given).shape),)
    with pytest.warns(fxmaps.FxmapsWarning, match=rf"^{match}"):
        maps = fxmaps.extract(graph, given, layers="conv")
    first = graph.layers("conv")[0]
    assert torch.equal(maps[first.name], hook_outputs(net, meant(given))[first.target][0])
    assert_unchanged(net, before)


def test_numpy_arrays_are_tensors() -> None:
    net = toy.CifarResNet().eval()
    array = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    maps = fxmaps.extract(net, array, layers=["conv1"])
    assert torch.equal(maps["conv1"], hook_outputs(net, torch.from_numpy(array))["conv1"][0])
    graph = fxmaps.analyze(net, [array])
    assert graph.input_shapes == (array.shape,)


def test_integer_ids_for_an_embedding_are_right() -> None:
    graph = fxmaps.analyze(Tokens(), torch.tensor([[1, 2, 3]]))
    assert graph["proj"].out_shape == (1, 3, 2)


def test_a_model_that_converts_its_input_itself_is_left_alone() -> None:
    pixels = torch.randint(0, 256, (2, 8, 8), dtype=torch.uint8)
    model = OwnConversion()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = fxmaps.analyze(model, pixels)
        maps = fxmaps.extract(graph, pixels)
    assert graph.input_shapes == (tuple(pixels.shape),)
    assert torch.equal(maps["conv"], hook_outputs(model, pixels)["conv"][0])


# ------------------------------------------------------------------------- 6. NaN and inf


def test_nan_in_the_input_is_named() -> None:
    x = torch.randn(1, 3, 16, 16)
    x[0, 0, 0, 0], x[0, 1, 2, 3] = float("nan"), float("inf")
    total = x.numel()
    with pytest.warns(
        fxmaps.FxmapsWarning,
        match=rf"input 0 holds 1 NaN and 1 infinite values "
        rf"\(of {total}\).*Check how the input was loaded and normalised",
    ):
        fxmaps.analyze(toy.CifarResNet(), x)
    with pytest.warns(fxmaps.FxmapsWarning, match=r"^input 0 holds 1 NaN"):
        fxmaps.extract(toy.CifarResNet(), x)


def test_nan_made_by_the_model_names_the_first_node() -> None:
    model = broken_batchnorm()
    x = torch.randn(2, 3, 12, 12)
    first = first_non_finite_module(model, x)
    seen = hook_outputs(model, x)
    bad_convs = [
        name for name, m in model.named_children()
        if isinstance(m, nn.Conv2d) and not torch.isfinite(seen[name][0]).all()
    ]  # fmt: skip
    before = snapshot(model)
    message = (
        rf"^the map of '{bad_convs[0]}' holds NaN or inf values although the input is finite; "
        rf"node '{first}' is the first to produce them"
    )
    with pytest.warns(fxmaps.FxmapsWarning, match=message):
        maps = fxmaps.extract(model, x, layers="conv")
    assert set(maps) == {"0", "3"}
    with pytest.warns(fxmaps.FxmapsWarning, match=rf"^the model's output holds NaN.*'{first}'"):
        fxmaps.analyze(model, x)
    assert_unchanged(model, before)


# ------------------------------------------------------------------- 14. maps too big to keep


@pytest.mark.parametrize(
    "options",
    [{}, {"channels": "top:3"}, {"channels": slice(2, 6)}, {"channels": [0, 5]},
     {"reduce": "mean"}, {"reduce": "max:space"}, {"dtype": torch.float16}],
    ids=["all", "top", "slice", "indices", "mean", "space", "float16"],
)  # fmt: skip
@pytest.mark.parametrize("shapes", ["graph", "meta"])
def test_the_estimate_is_what_extraction_keeps(options: dict[str, Any], shapes: str) -> None:
    x = torch.randn(3, 3, 16, 16)
    model = toy.CifarResNet()
    graph = fxmaps.analyze(model, x[:1] if shapes == "graph" else None)
    chosen = graph.layers(["conv", "downsample", "linear", "add"])
    sizes = estimate_bytes(graph, chosen, map_options(**options), (x,))
    maps = fxmaps.extract(graph, x, layers=chosen, **options)
    assert sizes is not None
    assert dict(sizes) == {name: t.numel() * t.element_size() for name, t in maps.items()}


def test_the_default_limit_is_half_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = toy.CifarResNet()
    kept = fxmaps.extract(model, X)
    largest = max(kept, key=lambda name: kept[name].numel())
    free = kept.nbytes  # the maps fit in free memory, not in half of it
    monkeypatch.setattr(memory_module, "_available_bytes", lambda device: free)
    calls: list[object] = []
    handle = model.register_forward_pre_hook(lambda *args: calls.append(args))
    try:
        with pytest.raises(fxmaps.MemoryLimitError,
                           match=rf"more than the limit of .* \(half of the .* free on cpu\); "
                           rf"the largest: '{largest}'"):  # fmt: skip
            fxmaps.extract(model, X)
        assert calls == []  # refused before the model ran
        assert fxmaps.extract(model, X, max_bytes=math.inf).nbytes == free
    finally:
        handle.remove()


# ------------------------------------------------------------------ 13. unwritable folders


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(fxmaps.OutputError, match=r"folder .*locked.* is not writable"):
            fxmaps.extract(toy.CifarResNet(), X).save(locked / "maps.pt")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


# ------------------------------------------------------------------------ the command line

TOY = "tests.models:CifarResNet"
SIZE = ("--input-size", "3", "16", "16")
TOY_FILE = f"{Path(__file__).parent / 'models.py'}:CifarResNet"
SIZE_32 = ("--input-size", "3", "32", "32")


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    match: str
    """A regular expression; ``{tmp}`` in it stands for the folder, quoted."""
    setup: Callable[[Path], None] | None = None
    no_dot: bool = False
    free: int | None = None
    """Free memory to report, in bytes (``None``: the machine's own)."""


def _tiny_too_small() -> str:
    side = smallest_side(Tiny())
    return rf"needs an input of at least {side}×{side}"


COMMANDS: dict[str, Command] = {
    "summary-channels": Command(
        ("summary", TOY, "--input-size", "1", "16", "16"),
        r"node 'conv1' \(Conv2d\) failed on input of shape \(1, 1, 16",
    ),
    "summary-too-small": Command(
        ("summary", f"{HERE}:Tiny", "--input-size", "3", "6", "6"), _tiny_too_small()
    ),
    "summary-no-factory": Command(
        ("summary", f"{HERE}:raises_when_built"),
        r"building .* failed: RuntimeError: no config file found",
    ),
    "summary-syntax-error": Command(
        ("summary", "{tmp}/net.py:Net"),
        r"SyntaxError at line 2",
        _write("net.py", "import torch\ndef Net(:\n"),
    ),
    "summary-truncated-weights": Command(
        ("summary", TOY, "--weights", "{tmp}/w.pt"), r"truncated or corrupt", _truncated
    ),
    "summary-other-models-weights": Command(
        ("summary", TOY, "--weights", "{tmp}/other.pt"),
        r"^fxmaps: error: weights in .*missing keys 'conv1.weight'.*unexpected keys 'stem.weight'",
        _save("other.pt", lambda: toy.Conv1dNet().state_dict()),
    ),
    "summary-pickled-weights": Command(
        ("summary", TOY, "--weights", "{tmp}/evil.pt"),
        r"cannot read weights file",
        _save("evil.pt", lambda: {"conv1.weight": torch.zeros(1), "evil": Path("x")}),
    ),
    **{
        f"summary-spec-{name}": Command(("summary", spec), re.escape(message))
        for name, spec, message in [
            (
                "torchvision",
                "resnet1",
                "'resnet1' is not a torchvision model; did you mean resnet18",
            ),
            ("missing-file", "tests/nope.py:Net", "model file 'tests/nope.py' does not exist"),
            (
                "missing-attribute",
                "tests.models:CifarResNt",
                "has no attribute 'CifarResNt'; did you mean CifarResNet",
            ),
            (
                "arguments",
                "tests.models:CifarBlock",
                "cannot be built without arguments (cin, cout, stride, shortcut_name)",
            ),
            (
                "not-a-factory",
                "tests.models:CIFAR_RESNET",
                "neither an nn.Module class nor a factory",
            ),
            (
                "missing-module",
                "no_such_package.mod:Net",
                "cannot import module 'no_such_package.mod'",
            ),
        ]
    },
    "summary-whole-model": Command(
        ("summary", TOY, "--weights", "{tmp}/w.pt"),
        r"pickled Python objects",
        _save("w.pt", toy.CifarResNet),
    ),
    "maps-too-small": Command(
        ("maps", f"{HERE}:Tiny", "--input-size", "3", "6", "6", "-o", "{tmp}/maps"),
        _tiny_too_small(),
    ),
    "maps-truncated-image": Command(
        ("maps", TOY, *SIZE, "--image", "{tmp}/cut.jpg", "-o", "{tmp}/maps"),
        r"cut.jpg' is truncated or corrupt",
        _write("cut.jpg", DEFAULT_IMAGE.read_bytes()[:3000]),
    ),
    "maps-missing-image": Command(
        ("maps", TOY, *SIZE, "--image", "{tmp}/nope.png", "-o", "{tmp}/maps"),
        r"no image file",
    ),
    "stats-missing-data": Command(  # the folder is made only when its files are written
        ("stats", TOY, *SIZE, "--data", "{tmp}/none", "-o", "{tmp}/stats"),
        r"is neither 'digits' nor a folder",
    ),
    "stats-missing-model": Command(
        ("stats", "no_such_package.mod:Net", "--data", "digits", "-o", "{tmp}/stats"),
        r"cannot import module 'no_such_package.mod'",
    ),
    "maps-memory": Command(
        ("maps", TOY, *SIZE, "--max-bytes", "1K", "-o", "{tmp}/maps"),
        r"more than the limit of 1.0 KiB \(max_bytes=1024\)",
    ),
    "maps-absent-kind": Command(
        ("maps", TOY, *SIZE, "--layers", "attention", "-o", "{tmp}/m"),
        r"selects no node of CifarResNet; the kinds it has are",
    ),
    "maps-unknown-name": Command(
        ("maps", TOY, *SIZE, "--layers", "layer1.0.conv9", "-o", "{tmp}/m"),
        r"'layer1.0.conv9'.*'layer1.0.conv1'",
    ),
    "maps-into-a-file": Command(
        ("maps", TOY, *SIZE, "-o", "{tmp}/notes.txt"),
        r"it is a file, not a folder",
        _write("notes.txt", "x"),
    ),
    "maps-unknown-name-in-a-file-model": Command(
        ("maps", TOY_FILE, *SIZE_32, "--layers", "layer1.0.conv3", "-o", "{tmp}/maps"),
        re.escape(
            "no node named 'layer1.0.conv3' in the graph of CifarResNet (33 nodes); "
            "did you mean 'layer1.0.conv2', 'layer1.0.conv1'"
        ),
    ),
    "maps-unknown-pattern": Command(
        ("maps", TOY_FILE, *SIZE_32, "--layers", "layer9.*", "-o", "{tmp}/maps"),
        re.escape("pattern 'layer9.*' matches no node"),
    ),
    "maps-missing-folder": Command(
        ("maps", TOY_FILE, *SIZE_32, "-o", "{tmp}/missing/out.svg"),
        r"folder '{tmp}/missing' does not exist",
    ),
    "filters-unknown-name": Command(
        ("filters", TOY, "--layer", "conv9", "-o", "{tmp}/f.png"), r"'conv9'.*'conv1'"
    ),
    "filters-unknown-name-in-a-file-model": Command(
        ("filters", TOY_FILE, "--layer", "layer1.0.conv3", "-o", "{tmp}/f.png"),
        re.escape("no node named 'layer1.0.conv3'"),
    ),
    "filters-of-a-norm": Command(
        ("filters", TOY_FILE, "--layer", "bn1", "-o", "{tmp}/f.png"),
        re.escape("layer 'bn1' is a norm node (BatchNorm2d)"),
    ),
    "filters-missing-folder": Command(
        ("filters", TOY_FILE, "-o", "{tmp}/missing/out.svg"),
        r"folder '{tmp}/missing' does not exist",
    ),
    "graph-unknown-model": Command(
        ("graph", "resnet1", "-o", "{tmp}/g.svg"),
        re.escape("'resnet1' is not a torchvision model; did you mean resnet18"),
    ),
    "graph-collapse": Command(
        ("graph", TOY_FILE, *SIZE_32, "--collapse", "leaves", "-o", "{tmp}/g.svg"),
        re.escape("collapse='leaves' is not valid"),
    ),
    "graph-parent-is-a-file": Command(
        ("graph", TOY, *SIZE, "-o", "{tmp}/notes.txt/g.svg"),
        r"notes.txt' is a file, not a folder",
        _write("notes.txt", "x"),
    ),
    "graph-missing-folder": Command(
        ("graph", TOY, *SIZE, "-o", "{tmp}/missing/g.svg"), r"folder '{tmp}/missing' does not exist"
    ),
    "graph-into-a-folder": Command(
        ("graph", TOY, *SIZE, "-o", "{tmp}"), r"it is a folder; name a file in it"
    ),
    "graph-no-dot": Command(
        ("graph", TOY, *SIZE, "-o", "{tmp}/g.svg"), r"not found on PATH.*install", no_dot=True
    ),
    "report-missing-folder": Command(
        ("report", TOY, *SIZE, "-o", "{tmp}/missing/r.html"),
        r"folder '{tmp}/missing' does not exist",
    ),
    "report-unknown-name": Command(
        ("report", TOY_FILE, *SIZE_32, "--layers", "nope", "-o", "{tmp}/r.html"),
        re.escape("no node named 'nope'"),
    ),
    "report-not-an-image": Command(
        ("report", TOY, *SIZE, "--image", "{tmp}/notes.png", "-o", "{tmp}/r.html"),
        r"is not an image fxmaps can read",
        _write("notes.png", "not pixels"),
    ),
    "report-memory": Command(
        ("report", TOY, *SIZE, "--max-bytes", "1K", "-o", "{tmp}/r.html"),
        r"more than the limit of 1.0 KiB \(max_bytes=1024\)",
    ),
    "bench-memory": Command(
        ("bench", TOY, *SIZE, "--max-bytes", "1K", "--repeat", "1"),
        r"the 7 maps asked for would take",
    ),
    "bench-channels": Command(
        ("bench", TOY, "--input-size", "1", "16", "16", "--repeat", "1"),
        r"failed on input of shape \(8, 1, 16, 16\); it expects 3 input",
    ),
    "bench-json-folder": Command(
        ("bench", TOY, *SIZE, "--json", "{tmp}/missing/b.json"),
        r"folder '.*missing' does not exist",
    ),
    "demo-into-a-file": Command(
        ("demo", "-o", "{tmp}/notes.txt"), r"it is a file, not a folder", _write("notes.txt", "x")
    ),
    # issue 17, case 5: an example input too large for memory is refused before it is made
    "summary-input-too-large": Command(
        ("summary", TOY, "--input-size", "3", "100000", "100000"),
        r"--input-size 3 100000 100000 with --batch 1 makes an example input of 111.8 GiB "
        r"\(1×3×100000×100000 float32\), more than the limit of 512.0 MiB \(half of the "
        r"1.0 GiB free on cpu\); use a smaller --input-size or --batch",
        free=2**30,
    ),
    "summary-batch-too-large": Command(
        ("summary", TOY, *SIZE, "--batch", "1000000"),
        rf"--input-size 3 16 16 with --batch 1000000 makes an example input of "
        rf"{3 * 16 * 16 * 4 * 10**6 / 2**30:.1f} GiB",
        free=2**30,
    ),
    "bench-batch-too-large": Command(
        ("bench", TOY, *SIZE, "--batch", "1000000", "--repeat", "1"),
        r"with --batch 1000000 makes an example input of",
        free=2**30,
    ),
    "stats-batch-too-large": Command(
        (
            "stats",
            TOY,
            "--input-size",
            "3",
            "1000",
            "1000",
            "--data",
            "digits",
            "--batch-size",
            "4096",
            "-o",
            "{tmp}/stats",
        ),
        r"--input-size 3 1000 1000 with --batch-size 4096 makes an example input of 45.8 GiB "
        r"\(4096×3×1000×1000 float32\).*use a smaller --input-size or --batch-size",
        free=2**30,
    ),
    "maps-input-too-large": Command(
        ("maps", TOY, "--input-size", "3", "100000", "100000", "-o", "{tmp}/maps"),
        r"--input-size 3 100000 100000 makes an example input of 111.8 GiB",
        free=2**30,
    ),
    "maps-image-over-pil-limit": Command(  # memory enough: PIL's own limit is what refuses
        (
            "maps",
            TOY,
            "--input-size",
            "3",
            "30000",
            "30000",
            "--image",
            "{tmp}/cat.png",
            "-o",
            "{tmp}/maps",
        ),
        rf"--input-size 3 30000 30000: size=30000 asks for a 30000×30000 image "
        rf"\(900,000,000 pixels\), more than PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels",
        lambda folder: Image.new("RGB", (40, 30)).save(folder / "cat.png"),
        free=2**50,
    ),
    "report-image-bomb": Command(
        ("report", TOY, *SIZE, "--image", "{tmp}/bomb.png", "-o", "{tmp}/r.html"),
        r"bomb.png' is larger than PIL opens",
        lambda folder: _bomb(folder / "bomb.png"),
    ),
    # issue 17, case 5: --device names a device this machine has
    "bench-device-banana": Command(
        ("bench", TOY, *SIZE, "--device", "banana", "--repeat", "1"),
        rf"--device banana: not a device; use one of "
        rf"{', '.join(['cpu', *(f'cuda:{i}' for i in range(torch.cuda.device_count()))])}",
    ),
    "bench-device-meta": Command(
        ("bench", TOY, *SIZE, "--device", "meta", "--repeat", "1"),
        r"--device meta: not a device; use one of cpu",
    ),
    "bench-device-missing-cuda": Command(
        ("bench", TOY, *SIZE, "--device", "cuda:7", "--repeat", "1"),
        rf"--device cuda:7: cuda:7 is not among the {torch.cuda.device_count()} CUDA devices "
        r"here; use one of cpu, cuda:0"
        if torch.cuda.is_available()
        else r"--device cuda:7: no CUDA device here; use --device cpu",
    ),
    # issue 17, case 13: models and weights
    "summary-weights-a-folder": Command(
        ("summary", TOY, "--weights", "{tmp}"), r"'{tmp}' is a folder, not a weights file"
    ),
    "summary-factory-exits": Command(
        ("summary", f"{HERE}:exits_when_built"),
        r"building '.*exits_when_built' exited \(SystemExit: 5\)",
    ),
    "summary-torchscript": Command(
        ("summary", f"{HERE}:scripted", *SIZE),
        r"analyze\(\) needs the Python module, got a TorchScript RecursiveScriptModule",
    ),
    "summary-compiled-part": Command(
        ("summary", f"{HERE}:CompiledBody", *SIZE),
        r"submodule 'body' is a torch.compile OptimizedModule",
    ),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_command_line(
    command: Command,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    if command.no_dot:
        monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty")))
        assert shutil.which("dot") is None
    if command.setup is not None:
        command.setup(tmp_path)
    if command.free is not None:
        monkeypatch.setattr(memory_module, "_available_bytes", lambda device: command.free)
    before = files(tmp_path)
    code = main([arg.format(tmp=tmp_path) for arg in command.argv])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("fxmaps: error: "), err
    assert err.count("\n") == 1, err  # the error line and nothing else
    assert re.search(command.match.replace("{tmp}", re.escape(str(tmp_path))), err), err
    assert "Traceback" not in err
    assert files(tmp_path) == before


ARGUMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "max-bytes-not-a-size": (
        ("maps", TOY, "--max-bytes", "2X", "-o", "maps"),
        "argument --max-bytes: '2X' is not a size",
    ),
    "max-maps-zero": (
        ("maps", TOY_FILE, "--max-maps", "0", "-o", "maps"),
        "argument --max-maps: '0' is not a whole number >= 1",
    ),
}
"""Arguments argparse itself refuses (exit 2 before any work): argv, message."""


@pytest.mark.parametrize(("argv", "message"), ARGUMENTS.values(), ids=ARGUMENTS.keys())
def test_command_line_arguments_are_checked(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(list(argv))
    assert message in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("fxmaps.cli.commands.analyze", broken)
    code = main(["summary", TOY])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        "fxmaps: error: ZeroDivisionError: a bug (unexpected: run again with --debug for the "
        "traceback, and please report it)\n"
    )
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["summary", TOY, "--debug"])


# ------------------------------------------------------------------------ 5. CUDA devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_maps_to_a_missing_gpu() -> None:
    with pytest.raises(fxmaps.DeviceError, match=r"device='cuda': there is no CUDA device here"):
        fxmaps.extract(toy.CifarResNet(), X, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_for_a_cpu_model() -> None:
    model = toy.CifarResNet()
    before = snapshot(model)
    with pytest.raises(fxmaps.DeviceError, match=r"input 0 is on cuda:0 but the model's param"):
        fxmaps.extract(model, X.cuda())
    assert_unchanged(model, before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_limit_on_cuda_is_half_its_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = toy.CifarResNet().cuda()
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2000, 10**10))
    with pytest.raises(fxmaps.MemoryLimitError, match=r"\(half of the 2.0 KiB free on cuda"):
        fxmaps.extract(model, X.cuda())
    assert fxmaps.extract(model, X.cuda(), device="cpu")["conv1"].device.type == "cpu"
