"""Random small models for the property-based tests, each with what fxmaps must find in it.

:func:`model_specs` is a hypothesis strategy. It draws a :class:`ModelSpec`: one of
Conv1d/2d/3d for the whole model, an input of 1-8 channels and side 8-16, and a small
tree of parts (containers nested at most ``MAX_DEPTH`` deep, about ``MAX_PARTS`` parts).
``spec.build()`` makes the ``nn.Module`` (weights drawn from ``spec.seed``);
``spec.truth`` is the generator's own count of what it placed (:class:`Truth`): conv
calls (a module that runs twice counts twice), downsample convs (those on a residual's
shortcut), residual blocks, main-path ``nn.Sequential`` calls, linears, and residuals by
the kind of their shortcut.

Parts (every container is a module of its own, so each add lies inside one call):

* leaves: convs (kernel 1 or 3, stride 1 or 2; ``nn.ConvNd``, ``nn.ConvTransposeNd``
  or ``F.convNd`` on parameters), BatchNorm or GroupNorm, activations (``nn.ReLU``
  in place or not, ``F.relu`` in place or not, ``.relu()``, GELU, dropout), pooling
  (``F.avg_pool`` or ``nn.MaxPool``), ``x * a + b`` with constants, a ``flatten``/
  ``view`` round trip, ``nn.Identity``, and *reuse*: a part drawn earlier (same channels
  and side) called again at another place, the same module instance;
* ``nn.Sequential`` and ``nn.ModuleList`` chains;
* residual blocks with an identity, empty ``nn.Sequential()``, ``nn.Identity``, 1×1
  projection (bare or in an ``nn.Sequential``), ``F.avg_pool`` or any-part shortcut,
  added with ``+`` (either order), ``+=``, ``torch.add``, ``.add`` or ``.add_``, the
  shortcut computed first or last, in a module or in the model's own forward. The main
  branch always holds more convs than the shortcut (so it is a residual, never a
  multi-branch merge);
* merges that are not residuals: two branches with as many convs each, added (a branch
  and a fresh copy of it, a chain of as many convs, or identity when there is no conv);
* ``torch.cat`` of 2-3 branches (identity branches included) and ``x * sigmoid(f(x))``
  gates, neither of which is a residual;
* a part called twice in a row (``m(m(x))``);
* at the end, optionally, adaptive pooling, ``flatten``/``view``/``nn.Flatten`` and a linear.

:func:`features` names the parts a model holds, so a test can check that a run of
examples covers all of ``FEATURES``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

__all__ = [
    "FEATURES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "ModelSpec",
    "Spec",
    "Truth",
    "features",
    "model_specs",
]

MAX_DEPTH = 3  # containers nested at most this deep
MAX_PARTS = 12  # parts drawn freely; forced fix-ups (a conv to match channels) may add a few
MAX_CHANNELS = 8
SIDES = (8, 16)  # input side, inclusive range

Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class Truth:
    """What fxmaps must count in a model, as placed by the generator."""

    convs: int = 0
    downsample: int = 0
    residual: int = 0
    sequential: int = 0
    linear: int = 0
    functional_convs: int = 0  # of ``convs``: F.conv calls, which forward hooks do not see
    identity_skips: int = 0  # residuals by what their shortcut holds (fxmaps.SkipKind)
    projection_skips: int = 0
    parameter_free_skips: int = 0

    def __add__(self, other: Truth) -> Truth:
        return Truth(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, times: int) -> Truth:
        return Truth(*(getattr(self, f.name) * times for f in fields(self)))


def _total(parts: Sequence[Spec | None]) -> Truth:
    return sum((p.truth for p in parts if p is not None), Truth())


# -- specs ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One part: ``c_in`` channels at side ``size_in`` in, ``c_out`` at ``size_out`` out."""

    uid: int
    c_in: int
    c_out: int
    size_in: int
    size_out: int

    @property
    def truth(self) -> Truth:
        return Truth()

    @property
    def transparent(self) -> bool:
        """Only norms, activations, dropout, reshapes and identities: an identity shortcut."""
        return False

    def make(self, ctx: _Build) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True, kw_only=True)
class Conv(Spec):
    kernel: int
    stride: int
    bias: bool
    style: str  # "module", "transposed" (stride 1) or "functional" (F.conv on parameters)

    @property
    def truth(self) -> Truth:
        return Truth(convs=1, functional_convs=int(self.style == "functional"))

    def make(self, ctx: _Build) -> nn.Module:
        kinds: tuple[Any, ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
        if self.style == "transposed":
            kinds = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
        conv = kinds[ctx.dim - 1](
            self.c_in, self.c_out, self.kernel, self.stride, self.kernel // 2, bias=self.bias
        )
        return _FunctionalConv(conv, ctx.dim) if self.style == "functional" else conv

    def describe(self) -> str:
        stride = f"/{self.stride}" if self.stride > 1 else ""
        style = "" if self.style == "module" else f" {self.style}"
        return f"conv{self.kernel}{stride}({self.c_in}→{self.c_out}{style})"


@dataclass(frozen=True, kw_only=True)
class Norm(Spec):
    style: str  # "batch" | "group"
    transparent = True

    def make(self, ctx: _Build) -> nn.Module:
        if self.style == "group":
            return nn.GroupNorm(1, self.c_in)  # needs more than one value: c_in × side > 1
        return _batch_norm(self.c_in, ctx.dim)

    def describe(self) -> str:
        return f"{self.style}norm"


ACTIVATIONS = ("relu", "relu_inplace", "F.relu", "F.relu_inplace", ".relu()", "gelu", "dropout")


@dataclass(frozen=True, kw_only=True)
class Act(Spec):
    style: str  # one of ACTIVATIONS
    transparent = True

    def make(self, ctx: _Build) -> nn.Module:
        return _activation(self.style, ctx.dim)

    def describe(self) -> str:
        return self.style


@dataclass(frozen=True, kw_only=True)
class Pool(Spec):
    style: str  # "F.avg_pool" | "maxpool"

    def make(self, ctx: _Build) -> nn.Module:
        if self.style == "maxpool":
            return (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[ctx.dim - 1](2)
        return _Functional(self.style, ctx.dim)

    def describe(self) -> str:
        return self.style


@dataclass(frozen=True, kw_only=True)
class Elementwise(Spec):
    """Parameter-free ops that keep the shape: constants, reshapes, identities."""

    style: str  # "scale" | "reshape" | "identity"

    @property
    def transparent(self) -> bool:
        return self.style != "scale"

    def make(self, ctx: _Build) -> nn.Module:
        if self.style == "identity":
            return nn.Identity()
        return _Functional(self.style, ctx.dim, self.c_in, self.size_in)

    def describe(self) -> str:
        return self.style


@dataclass(frozen=True, kw_only=True)
class Reuse(Spec):
    """The module of an earlier part, called again here."""

    target: Spec

    @property
    def truth(self) -> Truth:
        return self.target.truth

    @property
    def transparent(self) -> bool:
        return self.target.transparent

    def make(self, ctx: _Build) -> nn.Module:
        return ctx.module(self.target)

    def describe(self) -> str:
        return f"reuse#{self.target.uid}"


@dataclass(frozen=True, kw_only=True)
class Chain(Spec):
    """Parts run one after the other: an ``nn.Sequential`` or a loop over an ``nn.ModuleList``."""

    parts: tuple[Spec, ...]
    sequential: bool

    @property
    def truth(self) -> Truth:
        return _total(self.parts) + Truth(sequential=int(self.sequential))

    @property
    def transparent(self) -> bool:
        return all(p.transparent for p in self.parts)

    def make(self, ctx: _Build) -> nn.Module:
        modules = [ctx.module(p) for p in self.parts]
        return nn.Sequential(*modules) if self.sequential else _Loop(modules)

    def describe(self) -> str:
        inside = ", ".join(p.describe() for p in self.parts)
        return f"{'seq' if self.sequential else 'list'}#{self.uid}[{inside}]"


SHORTCUTS = (
    "identity", "empty_sequential", "nn.Identity", "projection", "projection_sequential",
    "avg_pool", "branch",
)  # fmt: skip
ADD_STYLES = ("out + x", "x + out", "out += x", "torch.add", ".add", ".add_")


@dataclass(frozen=True, kw_only=True)
class Residual(Spec):
    main: tuple[Spec, ...]
    main_sequential: bool
    stride: int
    shortcut: str  # one of SHORTCUTS
    branch: Spec | None  # the shortcut "branch": any part with fewer convs than the main one
    shortcut_first: bool  # the forward computes the shortcut before the main branch
    add: str  # one of ADD_STYLES
    post: str | None  # an activation after the add
    inline: bool  # the add is in the model's own forward (no module call around it)

    @property
    def shortcut_truth(self) -> Truth:
        """The shortcut's counts: every conv on it is a downsample conv, and no Sequential
        that only forms a shortcut is a sequential block."""
        if self.branch is not None:
            truth = self.branch.truth
            return replace(truth, downsample=truth.convs, sequential=0)
        convs = int(self.shortcut.startswith("projection"))
        return Truth(convs=convs, downsample=convs)

    @property
    def truth(self) -> Truth:
        shortcut = self.shortcut_truth
        identity = self.branch.transparent if self.branch else self.shortcut != "avg_pool"
        own = Truth(
            residual=1,
            sequential=int(self.main_sequential),
            projection_skips=int(shortcut.convs > 0),
            identity_skips=int(not shortcut.convs and identity),
            parameter_free_skips=int(not shortcut.convs and not identity),
        )
        return _total(self.main) + shortcut + own

    def make(self, ctx: _Build) -> nn.Module:
        main = [ctx.module(p) for p in self.main]
        return _ResidualBlock(
            nn.Sequential(*main) if self.main_sequential else _Loop(main),
            self._shortcut(ctx),
            self.add,
            self.post,
            ctx.dim,
            inline=self.inline,
            shortcut_first=self.shortcut_first,
        )

    def _shortcut(self, ctx: _Build) -> nn.Module | None:
        if self.branch is not None:
            return ctx.module(self.branch)
        if self.shortcut == "nn.Identity":
            return nn.Identity()
        if self.shortcut == "empty_sequential":
            return nn.Sequential()
        if self.shortcut == "avg_pool":
            return _Functional("F.avg_pool_ceil", ctx.dim)
        if self.shortcut.startswith("projection"):
            conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ctx.dim - 1]
            project = conv(self.c_in, self.c_out, 1, stride=self.stride, bias=False)
            if self.shortcut == "projection_sequential":
                return nn.Sequential(project, _batch_norm(self.c_out, ctx.dim))
            return project
        return None

    def describe(self) -> str:
        main = ", ".join(p.describe() for p in self.main)
        shortcut = self.branch.describe() if self.branch else self.shortcut
        order = ", shortcut first" if self.shortcut_first else ""
        inline = " inline" if self.inline else ""
        return f"residual#{self.uid}{inline}[{main} | {shortcut}, {self.add}{order}]"


@dataclass(frozen=True, kw_only=True)
class Merge(Spec):
    """``a(x) + b(x)`` with as many convs on each side: a multi-branch merge."""

    a: Spec
    b: Spec | None  # None: identity (only when ``a`` has no conv)
    mirror: bool  # b is a fresh copy of a

    @property
    def truth(self) -> Truth:
        return self.a.truth * 2 if self.mirror else _total([self.a, self.b])

    def make(self, ctx: _Build) -> nn.Module:
        if self.mirror:
            b: nn.Module = _Build(ctx.dim).module(self.a)  # fresh modules, same structure
        else:
            b = nn.Identity() if self.b is None else ctx.module(self.b)
        return _MergeBlock(ctx.module(self.a), b)

    def describe(self) -> str:
        other = "mirror" if self.mirror else "identity" if self.b is None else self.b.describe()
        return f"merge#{self.uid}[{self.a.describe()} + {other}]"


@dataclass(frozen=True, kw_only=True)
class Concat(Spec):
    branches: tuple[Spec | None, ...]  # None: the input itself

    @property
    def truth(self) -> Truth:
        return _total(self.branches)

    def make(self, ctx: _Build) -> nn.Module:
        return _ConcatBlock([None if b is None else ctx.module(b) for b in self.branches])

    def describe(self) -> str:
        inside = ", ".join("x" if b is None else b.describe() for b in self.branches)
        return f"cat#{self.uid}[{inside}]"


@dataclass(frozen=True, kw_only=True)
class Gate(Spec):
    branch: Spec

    @property
    def truth(self) -> Truth:
        return self.branch.truth

    def make(self, ctx: _Build) -> nn.Module:
        return _GateBlock(ctx.module(self.branch))

    def describe(self) -> str:
        return f"gate#{self.uid}[{self.branch.describe()}]"


@dataclass(frozen=True, kw_only=True)
class Twice(Spec):
    child: Spec

    @property
    def truth(self) -> Truth:
        return self.child.truth * 2

    @property
    def transparent(self) -> bool:
        return self.child.transparent

    def make(self, ctx: _Build) -> nn.Module:
        return _TwiceBlock(ctx.module(self.child))

    def describe(self) -> str:
        return f"twice#{self.uid}[{self.child.describe()}]"


@dataclass(frozen=True)
class Head:
    pool: bool
    flatten: str  # "torch.flatten" | ".view" | "nn.Flatten"
    in_features: int
    out_features: int


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: ``parts`` run in the model's own forward, then the optional head."""

    dim: int
    batch: int
    channels: int
    side: int
    parts: tuple[Spec, ...]
    head: Head | None
    seed: int

    @property
    def truth(self) -> Truth:
        return _total(self.parts) + Truth(linear=int(self.head is not None))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.channels) + (self.side,) * self.dim

    def build(self) -> nn.Module:
        """The model in eval mode, its weights and statistics drawn from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            ctx = _Build(self.dim)
            parts = [ctx.module(p) for p in self.parts]
            return GeneratedNet(parts, self.head, self.dim).eval()

    def example_input(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn(self.input_shape, generator=generator)

    def describe(self) -> str:
        parts = ", ".join(p.describe() for p in self.parts)
        head = f" → {self.head}" if self.head else ""
        return f"Conv{self.dim}d on {self.input_shape}: [{parts}]{head}"


@dataclass
class _Build:
    """Builds modules from specs; a part built twice (a reuse) is the same instance."""

    dim: int
    built: dict[int, nn.Module] = field(default_factory=dict)

    def module(self, spec: Spec) -> nn.Module:
        if spec.uid not in self.built:
            self.built[spec.uid] = spec.make(self)
        return self.built[spec.uid]


# -- modules --------------------------------------------------------------------------------


def _batch_norm(channels: int, dim: int) -> nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d:
    norm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dim - 1](channels)
    norm.running_mean = torch.randn(channels)  # statistics that change the values
    norm.running_var = torch.rand(channels) + 0.5
    return norm


def _activation(style: str, dim: int) -> nn.Module:
    if style in ("relu", "relu_inplace"):
        return nn.ReLU(inplace=style == "relu_inplace")
    if style == "gelu":
        return nn.GELU()
    if style == "dropout":
        return nn.Dropout(0.5)
    return _Functional(style, dim)


class _Functional(nn.Module):
    """A functional op or tensor method, traced through into ``call_function`` nodes."""

    def __init__(self, style: str, dim: int, channels: int = 0, side: int = 0) -> None:
        super().__init__()
        self.style, self.dim, self.channels, self.side = style, dim, channels, side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool: Any = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[self.dim - 1]
        if self.style == "F.relu":
            return F.relu(x)
        if self.style == "F.relu_inplace":
            return F.relu(x, inplace=True)
        if self.style == ".relu()":
            return x.relu()
        if self.style == "F.avg_pool":
            return pool(x, 2)
        if self.style == "F.avg_pool_ceil":
            return pool(x, 2, ceil_mode=True)
        if self.style == "scale":
            return x * 0.5 + 0.25
        if self.style == "reshape":
            flat = x.flatten(2)
            return flat.view(-1, self.channels, *(self.side,) * self.dim)
        raise ValueError(f"unknown functional style {self.style!r}")


class _FunctionalConv(nn.Module):
    """``F.conv{1,2,3}d`` on parameters of its own (taken from ``conv``)."""

    def __init__(self, conv: nn.modules.conv._ConvNd, dim: int) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding, self.dim = conv.stride, conv.padding, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv: Any = (F.conv1d, F.conv2d, F.conv3d)[self.dim - 1]
        return conv(x, self.weight, self.bias, self.stride, self.padding)


class _Loop(nn.Module):
    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _ResidualBlock(nn.Module):
    """``main(x) + shortcut(x)``; when ``inline``, the model calls :meth:`merge` itself,
    so that the add happens in the model's own forward."""

    def __init__(
        self,
        main: nn.Module,
        shortcut: nn.Module | None,
        add: str,
        post: str | None,
        dim: int,
        *,
        inline: bool,
        shortcut_first: bool,
    ) -> None:
        super().__init__()
        self.main = main
        if shortcut is not None:
            self.shortcut = shortcut
        self.add = add
        self.post = None if post is None else _activation(post, dim)
        self.inline = inline
        self.shortcut_first = shortcut_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(x)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut_first:
            skip = self.shortcut(x) if hasattr(self, "shortcut") else x
            out = self.main(x)
        else:
            out = self.main(x)
            skip = self.shortcut(x) if hasattr(self, "shortcut") else x
        if self.add == "out + x":
            out = out + skip
        elif self.add == "x + out":
            out = skip + out
        elif self.add == "out += x":
            out += skip
        elif self.add == "torch.add":
            out = torch.add(out, skip)
        elif self.add == ".add":
            out = out.add(skip)
        else:
            out = out.add_(skip)
        return out if self.post is None else self.post(out)


class _MergeBlock(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


class _ConcatBlock(nn.Module):
    """``torch.cat`` of the branches' outputs; a ``None`` branch is the input itself."""

    def __init__(self, branches: Sequence[nn.Module | None]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(b for b in branches if b is not None)
        self.identity = tuple(b is None for b in branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modules = iter(self.branches)
        return torch.cat([x if same else next(modules)(x) for same in self.identity], dim=1)


class _GateBlock(nn.Module):
    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.branch(x))


class _TwiceBlock(nn.Module):
    def __init__(self, child: nn.Module) -> None:
        super().__init__()
        self.child = child

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.child(self.child(x))


class GeneratedNet(nn.Module):
    """The model a :class:`ModelSpec` builds: its parts in its own forward, then a head."""

    def __init__(self, parts: Sequence[nn.Module], head: Head | None, dim: int) -> None:
        super().__init__()
        for i, part in enumerate(parts):
            self.add_module(f"part{i}", part)
        self.n_parts = len(parts)
        self.head = head
        self.dim = dim
        if head is not None:
            self.fc = nn.Linear(head.in_features, head.out_features)
            if head.flatten == "nn.Flatten":
                self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_parts):
            part = getattr(self, f"part{i}")
            x = part.merge(x) if isinstance(part, _ResidualBlock) and part.inline else part(x)
        if self.head is None:
            return x
        if self.head.pool:
            pool: Any = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)
            x = pool[self.dim - 1](x, 1)
        if self.head.flatten == "torch.flatten":
            x = torch.flatten(x, 1)
        elif self.head.flatten == ".view":
            x = x.view(x.size(0), -1)
        else:
            x = self.flatten(x)
        return self.fc(x)


# -- drawing --------------------------------------------------------------------------------

_CHANNELS = st.integers(1, MAX_CHANNELS)
_KERNELS = st.sampled_from((3, 1))


@st.composite
def model_specs(draw: Draw) -> ModelSpec:
    """A random :class:`ModelSpec` (the hypothesis strategy); shrinks towards small 2-D nets."""
    dim = draw(st.sampled_from((2, 1, 3)))
    channels, side = draw(_CHANNELS), draw(st.integers(*SIDES))
    drawer = _Drawer(draw)
    parts: list[Spec] = []
    c, size = channels, side
    for _ in range(draw(st.integers(1, 4))):
        if parts and drawer.parts_left <= 0:
            break
        parts.append(drawer.part(c, size, 0, shrink=True))
        c, size = parts[-1].c_out, parts[-1].size_out
    head = None
    if draw(st.booleans()):
        pool = draw(st.booleans()) or c * size**dim > 512
        in_features = c if pool else c * size**dim
        flatten = draw(st.sampled_from(("torch.flatten", ".view", "nn.Flatten")))
        head = Head(pool, flatten, in_features, draw(_CHANNELS))
    seed = draw(st.integers(0, 2**31 - 1))
    return ModelSpec(dim, draw(st.integers(1, 2)), channels, side, tuple(parts), head, seed)


class _Drawer:
    """Draws parts that fit the channels and side they get, keeping count of the parts."""

    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        self.parts_left = MAX_PARTS
        self.reusable: list[Spec] = []
        self._uids: Iterator[int] = itertools.count()

    def uid(self) -> int:
        return next(self._uids)

    def same(self, cls: type[Spec], c: int, size: int, **fields: Any) -> Spec:
        """A part of type ``cls`` that keeps ``c`` channels and side ``size``."""
        return cls(uid=self.uid(), c_in=c, c_out=c, size_in=size, size_out=size, **fields)

    def part(self, c: int, size: int, depth: int, *, shrink: bool) -> Spec:
        """Any part that takes ``c`` channels at side ``size``; ``shrink`` allows a smaller side."""
        self.parts_left -= 1
        shrink = shrink and size >= 2
        kinds = ["conv", "act", "norm", "elementwise"]
        if shrink:
            kinds.append("pool")
        if any(_fits(s, c, size) for s in self.reusable):
            kinds.append("reuse")
        if depth < MAX_DEPTH and self.parts_left > 0:
            kinds += ["residual"] * 3 + ["chain", "merge", "concat", "gate", "twice"]
        kind = self.draw(st.sampled_from(kinds))
        spec: Spec = getattr(self, f"_{kind}")(c, size, depth, shrink)
        if _fits(spec, c, size) and not isinstance(spec, Reuse):
            self.reusable.append(spec)
        return spec

    def conv(self, c: int, size: int, c_out: int, *, stride: int = 1) -> Conv:
        kernel, bias = self.draw(_KERNELS), self.draw(st.booleans())
        styles = ("module", "functional") + (("transposed",) if stride == 1 else ())
        size_out = (size - 1) // stride + 1
        return Conv(
            uid=self.uid(), c_in=c, c_out=c_out, size_in=size, size_out=size_out,
            kernel=kernel, stride=stride, bias=bias, style=self.draw(st.sampled_from(styles)),
        )  # fmt: skip

    def _conv(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        stride = 2 if shrink and self.draw(st.booleans()) else 1
        return self.conv(c, size, self.draw(_CHANNELS), stride=stride)

    def _act(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        style = self.draw(st.sampled_from(ACTIVATIONS))
        return self.same(Act, c, size, style=style)

    def _norm(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        styles = ("batch", "group") if c > 1 or size > 1 else ("batch",)
        return self.same(Norm, c, size, style=self.draw(st.sampled_from(styles)))

    def _elementwise(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        style = self.draw(st.sampled_from(("identity", "scale", "reshape")))
        return self.same(Elementwise, c, size, style=style)

    def _pool(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        style = self.draw(st.sampled_from(("F.avg_pool", "maxpool")))
        return Pool(uid=self.uid(), c_in=c, c_out=c, size_in=size, size_out=size // 2, style=style)

    def _reuse(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        target = self.draw(st.sampled_from([s for s in self.reusable if _fits(s, c, size)]))
        return self.same(Reuse, c, size, target=target)

    def _chain(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        parts = self.chain(c, size, depth, shrink=shrink, n=self.draw(st.integers(1, 3)))
        return self.wrap(parts, sequential=self.draw(st.booleans()))

    def chain(self, c: int, size: int, depth: int, *, shrink: bool, n: int) -> list[Spec]:
        """Up to ``n`` parts one after the other, one level deeper (at least one part)."""
        parts: list[Spec] = []
        for _ in range(n):
            if parts and self.parts_left <= 0:
                break
            parts.append(self.part(c, size, depth + 1, shrink=shrink))
            c, size = parts[-1].c_out, parts[-1].size_out
        return parts

    def wrap(self, parts: Sequence[Spec], *, sequential: bool = False) -> Spec:
        """One part for a chain: the part itself when it is alone and needs no container."""
        if len(parts) == 1 and not sequential:
            return parts[0]
        first, last = parts[0], parts[-1]
        return Chain(
            uid=self.uid(), c_in=first.c_in, c_out=last.c_out, size_in=first.size_in,
            size_out=last.size_out, parts=tuple(parts), sequential=sequential,
        )  # fmt: skip

    def to_channels(self, parts: list[Spec], c_out: int) -> list[Spec]:
        """``parts``, with a conv at the end when they do not give ``c_out`` channels."""
        last = parts[-1]
        return (
            parts if last.c_out == c_out else [*parts, self.conv(last.c_out, last.size_out, c_out)]
        )

    def _residual(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        stride = 2 if shrink and self.draw(st.booleans()) else 1
        kept = ("identity", "empty_sequential", "nn.Identity") if stride == 1 else ("avg_pool",)
        more = ("branch",) if stride == 1 and self.parts_left > 0 else ()
        shortcut = self.draw(st.sampled_from((*kept, "projection", "projection_sequential", *more)))
        branch = self.part(c, size, depth + 1, shrink=False) if shortcut == "branch" else None
        c_out = c if shortcut in kept else branch.c_out if branch else self.draw(_CHANNELS)
        main: list[Spec] = []
        if stride == 2:
            main.append(self.conv(c, size, self.draw(_CHANNELS), stride=2))
        main_c, main_size = (main[-1].c_out, main[-1].size_out) if main else (c, size)
        n = self.draw(st.integers(0 if main else 1, 2))
        if n:
            main += self.chain(main_c, main_size, depth, shrink=False, n=n)
        shortcut_convs = branch.truth.convs if branch else int(shortcut.startswith("projection"))
        # The main branch needs more convs than the shortcut, else it is a multi-branch merge.
        while not main or _total(main).convs <= shortcut_convs or main[-1].c_out != c_out:
            last_c, last_size = (main[-1].c_out, main[-1].size_out) if main else (c, size)
            main.append(self.conv(last_c, last_size, c_out))
        return Residual(
            uid=self.uid(), c_in=c, c_out=c_out, size_in=size, size_out=main[-1].size_out,
            inline=depth == 0 and self.draw(st.booleans()),
            main=tuple(main), main_sequential=self.draw(st.booleans()), stride=stride,
            shortcut=shortcut, branch=branch, shortcut_first=self.draw(st.booleans()),
            add=self.draw(st.sampled_from(ADD_STYLES)),
            post=self.draw(st.one_of(st.none(), st.sampled_from(ACTIVATIONS))),
        )  # fmt: skip

    def _merge(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        a = self.part(c, size, depth + 1, shrink=False)
        convs = a.truth.convs
        styles = ["mirror"]
        if convs == 0 and a.c_out == c:
            styles.append("identity")
        if convs:
            styles.append("convs")
        style = self.draw(st.sampled_from(styles))
        b: Spec | None = None
        if style == "convs":
            widths = [self.draw(_CHANNELS) for _ in range(convs - 1)] + [a.c_out]
            chain = [self.conv(i, size, o) for i, o in zip([c, *widths], widths, strict=False)]
            b = self.wrap(chain, sequential=self.draw(st.booleans()))
        return Merge(
            uid=self.uid(), c_in=c, c_out=a.c_out, size_in=size, size_out=size,
            a=a, b=b, mirror=style == "mirror",
        )  # fmt: skip

    def _concat(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        branches: list[Spec | None] = []
        for _ in range(self.draw(st.integers(2, 3))):
            if self.draw(st.booleans()) or self.parts_left <= 0:
                branches.append(None)
                continue
            parts = [self.part(c, size, depth + 1, shrink=False)]
            if parts[0].c_out > MAX_CHANNELS // 2:  # keep the concatenation narrow
                parts = self.to_channels(parts, self.draw(st.integers(1, MAX_CHANNELS // 2)))
            branches.append(self.wrap(parts))
        c_out = sum(c if b is None else b.c_out for b in branches)
        return Concat(
            uid=self.uid(), c_in=c, c_out=c_out, size_in=size, size_out=size,
            branches=tuple(branches),
        )  # fmt: skip

    def _gate(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        branch = self.wrap(self.to_channels([self.part(c, size, depth + 1, shrink=False)], c))
        return self.same(Gate, c, size, branch=branch)

    def _twice(self, c: int, size: int, depth: int, shrink: bool) -> Spec:
        child = self.wrap(self.to_channels([self.part(c, size, depth + 1, shrink=False)], c))
        return self.same(Twice, c, size, child=child)


def _fits(spec: Spec, c: int, size: int) -> bool:
    """Whether ``spec`` maps ``c`` channels at ``size`` to the same: it can run again here."""
    return spec.c_in == spec.c_out == c and spec.size_in == spec.size_out == size


# -- coverage -------------------------------------------------------------------------------

FEATURES = frozenset(
    {"conv1d", "conv2d", "conv3d", "head", "depth 3", "inline residual", "shortcut first"}
    | {f"shortcut {s}" for s in SHORTCUTS}
    | {f"add {a}" for a in ADD_STYLES}
    | {f"activation {a}" for a in ACTIVATIONS}
    | {"sequential", "module list", "reuse", "twice", "concat", "merge", "gate", "pool"}
    | {"conv module", "conv transposed", "conv functional"}
)


def features(spec: ModelSpec) -> set[str]:
    """Which of ``FEATURES`` a model has: to check that a run of examples covers them all."""
    found = {f"conv{spec.dim}d"} | ({"head"} if spec.head else set())
    stack = [(part, 0) for part in spec.parts]
    while stack:
        part, depth = stack.pop()
        found |= _features(part) | ({"depth 3"} if depth >= MAX_DEPTH else set())
        for f in fields(part):
            value = getattr(part, f.name)
            inside = value if isinstance(value, tuple) else (value,)
            if f.name != "target":
                stack += [(p, depth + 1) for p in inside if isinstance(p, Spec)]
    return found


def _features(part: Spec) -> set[str]:
    if isinstance(part, Residual):
        return {
            f"shortcut {part.shortcut}",
            f"add {part.add}",
            *(["inline residual"] if part.inline else []),
            *(["shortcut first"] if part.shortcut_first else []),
        }
    if isinstance(part, Chain):
        return {"sequential" if part.sequential else "module list"}
    if isinstance(part, Act):
        return {f"activation {part.style}"}
    if isinstance(part, Conv):
        return {f"conv {part.style}"}
    names = {Reuse: "reuse", Twice: "twice", Concat: "concat", Merge: "merge", Gate: "gate"}
    return {names.get(type(part), type(part).__name__.lower())}
