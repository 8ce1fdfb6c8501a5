"""Hand-written toy models shared by the tests, each with what fxmaps must find in it.

Names follow torchvision's feature-extraction convention. Expected values are
written out by hand from the model code, not copied from fxmaps's output.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset


class CifarBlock(nn.Module):
    """A CIFAR-style basic block: the shortcut is called ``shortcut`` (or ``shortcut_name``)
    and is an empty ``nn.Sequential()`` when shapes match, a 1x1 conv + BN otherwise."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut_name: str = "shortcut") -> None:
        super().__init__()
        self.shortcut_name = shortcut_name
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.add_module(shortcut_name, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.get_submodule(self.shortcut_name)(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """Three stages of one block each: identity, projection, projection."""

    def __init__(self, shortcut_name: str = "shortcut") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(CifarBlock(8, 8, 1, shortcut_name))
        self.layer2 = nn.Sequential(CifarBlock(8, 16, 2, shortcut_name))
        self.layer3 = nn.Sequential(CifarBlock(16, 32, 2, shortcut_name))
        self.linear = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


CIFAR_RESNET: dict[str, Any] = {
    "info": {"conv": 7, "downsample": 2, "linear": 1, "sequential": 3, "residual": 3},
    "downsample": ["layer2.0.shortcut.0", "layer3.0.shortcut.0"],
    "residual_blocks": ["layer1.0", "layer2.0", "layer3.0"],
    "skips": ["identity", "projection", "projection"],
    "merges": ["layer1.0.add", "layer2.0.add", "layer3.0.add"],  # fx records `+=` as add
}


class NamedShortcuts(nn.Module):
    """Shortcut modules named ``proj`` and ``skip``, and a main-path strided conv named
    ``downsample`` that is *not* a downsample conv."""

    def __init__(self) -> None:
        super().__init__()
        self.downsample = nn.Conv2d(3, 8, 3, 2, 1)
        self.body1 = nn.Sequential(nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1))
        self.proj = nn.Conv2d(8, 16, 1)
        self.body2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 1))
        self.skip = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(16, 32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        x = self.body1(x) + self.proj(x)
        return self.body2(x) + self.skip(x)


NAMED_SHORTCUTS: dict[str, Any] = {
    "info": {"conv": 5, "downsample": 2, "linear": 0, "sequential": 2, "residual": 2},
    "downsample": ["proj", "skip.1"],
    "conv": ["downsample", "body1.0", "body1.2", "body2.0", "body2.2"],
    "merges": ["add", "add_1"],
}


class MultiBranch(nn.Module):
    """Two parallel convs summed (equal conv counts: a merge, not a residual), then an
    identity skip around a conv (a residual)."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 8, 3, padding=1)
        self.right = nn.Conv2d(3, 8, 1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.left(x) + self.right(x)
        return y + self.body(y)


MULTI_BRANCH: dict[str, Any] = {
    "info": {"conv": 3, "downsample": 0, "linear": 0, "sequential": 0, "residual": 1},
    "merges": ["add_1"],
}


class NestedContainers(nn.Module):
    """A ModuleList of ModuleDicts and a Sequential nested in a Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.ModuleDict({"conv": nn.Conv2d(c, 8, 3, padding=1), "act": nn.ReLU()}) for c in (3, 8)
        )
        self.head = nn.Sequential(
            nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU()), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            layers = cast(nn.ModuleDict, stage)
            x = layers["act"](layers["conv"](x))
        return self.head(x)


NESTED_CONTAINERS: dict[str, Any] = {
    "names": [
        "x",
        "stages.0.conv",
        "stages.0.act",
        "stages.1.conv",
        "stages.1.act",
        "head.0.0",
        "head.0.1",
        "head.1",
        "head.2",
        "output",
    ],
    "kinds": [
        "input",
        "conv",
        "activation",
        "conv",
        "activation",
        "conv",
        "activation",
        "pool",
        "reshape",
        "output",
    ],
    "info": {"conv": 3, "downsample": 0, "linear": 0, "sequential": 2, "residual": 0},
    "blocks": {"head.0.0": "head.0", "head.1": "head", "stages.0.conv": None},
}


class FunctionalNet(nn.Module):
    """Functional conv and linear on the model's own parameters, and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.fc_weight = nn.Parameter(torch.randn(5, 4))
        self.fc_bias = nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, padding=1)
        x = self.conv(torch.relu(x))
        x = self.conv(x)
        x = x.mean(dim=(2, 3))
        return F.linear(x, self.fc_weight, self.fc_bias)


FUNCTIONAL_NET: dict[str, Any] = {
    "names": [
        "x",
        "weight",
        "conv2d",
        "relu",
        "conv",
        "conv_1",
        "mean",
        "fc_weight",
        "fc_bias",
        "linear",
        "output",
    ],
    "conv": ["conv2d", "conv", "conv_1"],
    "linear": ["linear"],
    "params": {
        "conv2d": 4 * 3 * 3 * 3,
        "conv": 4 * 4 * 9 + 4,
        "conv_1": 4 * 4 * 9 + 4,
        "linear": 5 * 4 + 5,
    },
}


class Gate(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return -x


class DataDependent(nn.Module):
    """A traceable model but for one submodule, which becomes an opaque leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gate = Gate()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.conv(x)))


class ManyGates(nn.Module):
    """Twelve untraceable gates, and one configured so that it traces."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConfigGate(dynamic=i != 5) for i in range(13))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ConfigGate(nn.Module):
    """Data-dependent control flow only when ``dynamic``."""

    def __init__(self, dynamic: bool) -> None:
        super().__init__()
        self.dynamic = dynamic
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.dynamic and x.sum() > 0:
            return x * 2
        return x


class RootDataDependent(nn.Module):
    """Data-dependent control flow in the model's own forward: nothing can be made a leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:  # the line the TraceError must quote
            y = y * 2
        return y


def get_same_padding(size: int, kernel: int, stride: int) -> int:
    """Shape arithmetic with ``max`` and ``math.ceil``, as timm's padding helpers do."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    height, width = x.size()[-2:]
    pad_h = get_same_padding(height, kernel, stride)
    pad_w = get_same_padding(width, kernel, stride)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class SamePadConv(nn.Module):
    """A conv with TensorFlow-style "same" padding computed from the input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        return self.conv(pad_same(x, kernel, stride))


class SamePadNet(nn.Module):
    """Helper functions must be autowrapped, leaving nothing opaque."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = SamePadConv(3, 8, 3, 2)
        self.block = SamePadConv(8, 8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x))


class OptionalMask(nn.Module):
    """An optional ``mask`` argument: traced as a proxy, ``mask is not None`` would be True."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: bool = False
    ) -> torch.Tensor:
        y = self.conv(x)
        if mask is not None:
            y = y * mask
        if scale:
            y = y / 2
        return y


class ShapeChecks(nn.Module):
    """Shape asserts (plain ``assert`` and ``torch._assert``) in a submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3, "expected RGB"
        torch._assert(x.dim() == 4, "expected a batch")
        return self.conv(x)


class TwoInputs(nn.Module):
    """An image and a vector, merged by concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.meta = nn.Linear(6, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        a = self.pool(self.conv(image)).flatten(1)
        b = torch.relu(self.meta(extra))
        return self.head(torch.cat([a, b], dim=1))


class Conv1dNet(nn.Module):
    """A 1-D signal model with an identity residual."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 8, 5, padding=2)
        self.body = nn.Sequential(
            nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1)
        )
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x + self.body(x)
        return self.fc(self.pool(x).squeeze(-1))


CONV1D_NET: dict[str, Any] = {
    "info": {"conv": 3, "downsample": 0, "linear": 1, "sequential": 1, "residual": 1},
    "merges": ["add"],
    "shapes": {"stem": (2, 8, 64), "body.2": (2, 8, 64), "pool": (2, 8, 1), "fc": (2, 3)},
}


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """A two-level U-Net: skip connections by concatenation, transposed-conv upsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = _double_conv(3, 8)
        self.enc2 = _double_conv(8, 16)
        self.bottom = _double_conv(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = _double_conv(32, 16)
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec1 = _double_conv(16, 8)
        self.out = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.out(d1)


UNET: dict[str, Any] = {
    "info": {"conv": 13, "downsample": 0, "linear": 0, "sequential": 5, "residual": 0},
    "concat": ["cat", "cat_1"],
    "shapes": {"bottom.3": (1, 32, 8, 8), "up1": (1, 8, 32, 32), "out": (1, 1, 32, 32)},
}


class SharedBlock(nn.Module):
    """A residual block called twice: two residual blocks, two sets of nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.block = CifarBlock(4, 4, 1)
        self.stem = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.block(self.stem(x)))


SHARED_BLOCK: dict[str, Any] = {
    "info": {"conv": 5, "downsample": 0, "linear": 0, "sequential": 0, "residual": 2},
    "residual_blocks": ["block", "block_1"],
    "conv": ["stem", "block.conv1", "block.conv2", "block.conv1_1", "block.conv2_1"],
}


class SqueezeExcite(nn.Module):
    """timm's SE shape: ``fc1`` -> ``bn`` (an ``nn.Identity``) -> ``ReLU(inplace=True)``.
    The in-place ReLU overwrites ``fc1``'s output through the Identity alias."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fc1 = nn.Conv2d(channels, 4, 1)
        self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.bn(self.fc1(s))))
        return x * s.sigmoid()


class InplaceOps(nn.Module):
    """In-place ops of every form: ``inplace=True`` functional, a ``_`` method, ``setitem``,
    a view mutated in place, and an in-place op whose result is never used."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.conv4 = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.conv1(x), inplace=True)  # conv1's map is overwritten
        b = self.conv2(a)
        b.add_(1.0)  # conv2's map is overwritten; the result of add_ is unused
        c = self.conv3(b)  # so conv3 must see b after add_
        c[:, 0] = 0.0  # setitem overwrites conv3's map
        flat = self.conv4(c).flatten(2)  # a view of conv4's map ...
        flat.mul_(2.0)  # ... mutated in place
        return flat


def add_into(x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """Adds ``shortcut`` into ``x`` in place, like torchvision mvit's ``_add_shortcut``."""
    x[:, 1:] += shortcut[:, 1:]
    return x


torch.fx.wrap("add_into")


class WrappedInplaceHelper(nn.Module):
    """An ``fx.wrap``-ed helper that updates its input; its result is never used."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.conv3 = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(x)
        b = self.conv2(a)
        add_into(b, a)  # overwrites conv2's map, through a call fx keeps whole
        return self.conv3(b)


class Sneaky(nn.Module):
    """Overwrites its input in place, with nothing on it that says so."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(0.5)
        return x + 1


class HiddenMutation(nn.Module):
    """An opaque module mutates a map: only the run-time version check can see it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.sneaky = Sneaky()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.sneaky(self.conv(x)))


DEAD_CHANNEL_SAMPLES = 37
"""Samples of :func:`dead_channel_cnn`: uneven (19 + 18 on two ranks, a short last batch)."""


def dead_channel_cnn() -> tuple[nn.Module, TensorDataset]:
    """A small CNN with one dead channel (a large negative bias on conv ``0``'s channel 2),
    and labelled 1×12×12 samples; the same weights and samples on every call."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    ).eval()
    conv = model[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.bias is not None
    with torch.no_grad():
        conv.bias[2] = -100.0
    images = torch.randn(DEAD_CHANNEL_SAMPLES, 1, 12, 12)
    return model, TensorDataset(images, torch.arange(DEAD_CHANNEL_SAMPLES) % 10)


def batchnorm_cnn() -> tuple[nn.Module, TensorDataset]:
    """A small CNN with BatchNorm whose running statistics are far from a batch's own
    (so eval-mode and training-mode maps differ plainly), left in training mode, and
    the 37 samples of :func:`dead_channel_cnn`; the same weights on every call."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3),
        nn.BatchNorm2d(4),
    )
    with torch.no_grad():
        for norm in (model[1], model[4]):
            assert isinstance(norm, nn.BatchNorm2d)
            assert norm.running_mean is not None
            assert norm.running_var is not None
            norm.running_mean.uniform_(-2.0, 2.0)
            norm.running_var.uniform_(0.25, 4.0)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1.0, 1.0)
    _, data = dead_channel_cnn()
    torch.manual_seed(1)
    return model.train(), data


# -- models symbolic tracing cannot follow, each for one cause the TraceError names ----------


def passing_on(forward: Any) -> Any:
    """A decorator whose wrapper hides ``forward``'s signature (no ``functools.wraps``)."""

    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return forward(self, *args, **kwargs)  # the line a wrapped forward fails on

    return wrapper


class WrappedForward(nn.Module):
    """``forward`` replaced by a decorator's ``(*args, **kwargs)`` wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    @passing_on
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.conv(x))


class Scaled(nn.Module):
    """A conv whose output is scaled by an optional keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return cast(torch.Tensor, self.conv(x)) * scale


class VariadicForward(nn.Module):
    """``forward(self, *args, **kwargs)`` that passes everything on."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Scaled()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return cast(torch.Tensor, self.inner(*args, **kwargs))


class ExtraArguments(nn.Module):
    """``forward(x, *args, **kwargs)`` that passes its extra arguments on."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Scaled()

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return cast(torch.Tensor, self.inner(x, *args, **kwargs))


class ListInput(nn.Module):
    """Takes a list of images, as detection models do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.conv(image) for image in images])


class SizeLoop(nn.Module):
    """Loops over a tensor's size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        for _ in range(x.shape[1]):
            y = y * 0.5
        return y


class SizeBranch(nn.Module):
    """Branches on a tensor's size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(-1) > 8:
            x = x[..., :8]
        return cast(torch.Tensor, self.conv(x))


# -- classifiers torch.fx cannot trace whole, for class activation maps ----------------------


def _same(value: torch.Tensor) -> torch.Tensor:
    return value


class TapBlock(nn.Module):
    """Conv, norm, then ``F.gelu`` (a function call, not a module: the node ``gelu``)
    written into in place by ``mul_`` (gelu's gradient needs its input, not its output,
    so autograd still runs), then a pool.

    ``tap`` is the identity; a test sets its own on an instance to reach the relu's
    value with plain autograd, and removes it after.
    """

    tap: Any = staticmethod(_same)

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tap(F.gelu(self.bn(self.conv(x))))
        y.mul_(0.5)  # overwrites the gelu's value
        return cast(torch.Tensor, self.pool(y))


class GatedClassifier(nn.Module):
    """Branches on a value in its own forward, so it is captured: the root runs as Python,
    ``features`` is one traced region (nodes ``features.0.conv`` ... ``features.1.pool``),
    ``gate`` and ``fc`` are leaves, and ``relu``, ``add``, ``mean_1`` are the root's ops.
    ``tap`` (the identity) sees the ``add``."""

    tap: Any = staticmethod(_same)

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(TapBlock(3, 8), TapBlock(8, 16))
        self.gate = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        if y.mean() > 0:  # a value decides: torch.fx cannot trace this
            y = self.tap(torch.relu(self.gate(y)) + y)
        return cast(torch.Tensor, self.fc(y.mean((2, 3))))


class WrappedClassifier(nn.Module):
    """``forward(image, scale)`` behind a ``(*args, **kwargs)`` wrapper, called with keywords."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    @passing_on
    def forward(self, image: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return cast(torch.Tensor, self.fc((torch.relu(self.conv(image)) * scale).mean((2, 3))))


class ListClassifier(nn.Module):
    """Takes one list: an image batch and a mask batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mask_conv = nn.Conv2d(1, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        image, mask = inputs
        y = torch.relu(self.conv(image)) * torch.sigmoid(self.mask_conv(mask))
        return cast(torch.Tensor, self.fc(y.mean((2, 3))))


class ChunkClassifier(nn.Module):
    """Splits a conv's channels in two with ``chunk`` (the first half is the node
    ``chunk.getitem``, a part of what one op made) in a forward that branches on a value;
    ``tap`` (the identity) sees that first half."""

    tap: Any = staticmethod(_same)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.conv(x).chunk(2, dim=1)
        first = self.tap(first)
        y = torch.relu(first) * torch.sigmoid(second)
        if y.mean() < 0:  # never, for a relu times a sigmoid: but torch.fx cannot know
            y = -y
        return cast(torch.Tensor, self.fc(y.mean((2, 3))))


class PositionGate(nn.Module):
    """Lets through only the positions of the last axis from ``start`` on (an image's
    columns, a signal's samples): the rest of the input cannot reach what follows."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.start = start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., self.start :] = 1
        return x * mask


def evidence_counter(dims: int, channels: int, gate: int | None = None) -> nn.Module:
    """Class 0 counts the bright positions (pixels, or a signal's samples) of a
    ``dims``-d input of ``channels`` channels; class 1 is its opposite. With ``gate``,
    only the positions of the last axis from ``gate`` on reach the classifier."""
    conv_type, pool_type = (
        (nn.Conv1d, nn.AdaptiveAvgPool1d) if dims == 1 else (nn.Conv2d, nn.AdaptiveAvgPool2d)
    )
    conv, head = conv_type(channels, 4, 3, padding=1), nn.Linear(4, 2)
    with torch.no_grad():
        conv.weight.fill_(1 / (channels * 3**dims))  # the mean of the window
        assert conv.bias is not None
        conv.bias.fill_(-0.5)
        head.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
        head.bias.zero_()
    gated = [PositionGate(gate)] if gate is not None else []
    return nn.Sequential(conv, nn.ReLU(), *gated, pool_type(1), nn.Flatten(), head).eval()
