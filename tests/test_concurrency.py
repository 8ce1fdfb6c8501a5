"""Calls on one model, one graph or one extractor from several threads at once.

Every call here starts from a barrier, so the threads overlap. Oracles: the same calls
made one after another (maps, statistics and shapes bit for bit), and the model's
snapshot from before (modes, buffers, hooks, attributes). Models in training mode are
the hard case: each fxmaps call puts the model in its graph's mode for the run and back
after, and without a lock one thread saves another's temporary mode as the model's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fxmaps
from fxmaps.trace.state import model_lock
from tests.conftest import tv_model
from tests.oracles import assert_unchanged, snapshot

T = TypeVar("T")
THREADS = 4


def together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls in threads that all start at once; their results, in order."""
    barrier = threading.Barrier(len(calls))

    def start(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(start, calls))


def same_maps(got: fxmaps.FeatureMaps, expected: fxmaps.FeatureMaps) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


class ModeScale(nn.Module):
    """Doubles its input in training mode: its map says which mode the model ran in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if self.training else x


class Tiny(nn.Module):
    """Conv, BatchNorm (buffers a training-mode run would update), ReLU, a mode mark, conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.mark = ModeScale()
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mark(self.bn(self.conv(x)).relu()))


class Branchy(Tiny):
    """Tiny, branching on its input's values: torch.fx cannot trace it, so it is captured."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mark(self.bn(self.conv(x)).relu())
        if x.mean() > 0:
            y = y * 2 + 1
        return self.head(y)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = Tiny()
    _used_statistics(model)
    return model


def branchy() -> nn.Module:
    torch.manual_seed(0)
    model = Branchy()
    _used_statistics(model)
    return model


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = tv_model("resnet18")
    _used_statistics(model)
    return model


def _used_statistics(model: nn.Module) -> None:
    """BatchNorm statistics that are not the defaults, so that restoring them shows."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None
                assert module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)


MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "tiny": (tiny, 16),
    "resnet18": (resnet18, 32),
}
"""Builders, and the side of their (small) inputs."""


def inputs(side: int, count: int = THREADS) -> list[torch.Tensor]:
    """One positive batch per thread (Branchy takes the same branch on each)."""
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(2, 3, side, side, generator=generator) + 0.1 for _ in range(count)]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(MODELS))
def test_extract_from_one_graph(name: str, mode: str) -> None:
    build, side = MODELS[name]
    model = build().train(mode == "train")
    xs = inputs(side)
    graph = fxmaps.analyze(model, xs[0])
    before = snapshot(model)
    serial = [fxmaps.extract(graph, x, layers="*") for x in xs]
    assert_unchanged(model, before)
    for _ in range(2):
        found = together([partial(fxmaps.extract, graph, x, layers="*") for x in xs])
        for got, expected in zip(found, serial, strict=True):
            same_maps(got, expected)
        assert_unchanged(model, before)


def _rows(model: nn.Module, x: torch.Tensor) -> list[tuple[str, ...]]:
    return [tuple(row) for row in fxmaps.analyze(model, x).summary_rows()]


@pytest.mark.parametrize("name", list(MODELS))
def test_extract_and_analyze_from_one_model(name: str) -> None:
    """Each call traces the model itself: tracing holds the model too."""
    build, side = MODELS[name]
    model = build().train()
    xs = inputs(side)
    before = snapshot(model)
    serial = [fxmaps.extract(model, x, layers="conv") for x in xs]
    shapes = [_rows(model, x) for x in xs[:1]] * len(xs)
    calls: list[Callable[[], Any]] = [
        *(partial(fxmaps.extract, model, x, layers="conv") for x in xs),
        *(partial(_rows, model, x) for x in xs),
    ]
    found = together(calls)
    for got, expected in zip(found[: len(xs)], serial, strict=True):
        same_maps(got, expected)
    assert found[len(xs) :] == shapes
    assert_unchanged(model, before)


def test_a_training_mode_graph() -> None:
    """A graph traced in training mode runs in it (batch statistics, the mark doubling),
    and the running statistics it updates are put back after each call."""
    model = tiny().eval()
    xs = inputs(16)
    graph = fxmaps.analyze(model, xs[0], train=True)
    before = snapshot(model)
    serial = [fxmaps.extract(graph, x, layers="*") for x in xs]
    found = together([partial(fxmaps.extract, graph, x, layers="*") for x in xs])
    for got, expected in zip(found, serial, strict=True):
        same_maps(got, expected)
    assert torch.equal(serial[0]["mark.mul"], 2 * serial[0]["relu"])
    assert_unchanged(model, before)


def test_one_feature_extractor() -> None:
    model = resnet18()
    xs = inputs(32)
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model), ["layer1.0.bn1", "fc"])
    before = snapshot(model)
    serial = [extractor(x) for x in xs]
    found = together([partial(extractor, x) for x in xs])
    for got, expected in zip(found, serial, strict=True):
        same_maps(got, expected)
    assert_unchanged(model, before)


def test_an_extractor_beside_extract_sees_the_model_s_own_mode() -> None:
    """A FeatureExtractor runs the model as it is (here in training mode, the mark
    doubling); an ``extract`` on the eval-mode graph at the same time must not lend it
    its eval mode. The mark is a leaf, so that it looks at its mode when it runs; no
    BatchNorm, so that a training-mode run changes nothing."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), ModeScale(), nn.Conv2d(4, 2, 1)).train()
    xs = inputs(8)
    graph = fxmaps.analyze(model, leaf_modules=[ModeScale])
    extractor = fxmaps.FeatureExtractor(graph, "*")

    def both(x: torch.Tensor) -> tuple[fxmaps.FeatureMaps, fxmaps.FeatureMaps]:
        return extractor(x), fxmaps.extract(graph, x, layers="*")

    serial = [both(x) for x in xs]
    assert torch.equal(serial[0][0]["1"], 2 * serial[0][0]["0"])
    assert torch.equal(serial[0][1]["1"], serial[0][1]["0"])
    for _ in range(3):
        found = together([partial(both, x) for x in xs])
        for (direct, extracted), (expected_direct, expected) in zip(found, serial, strict=True):
            same_maps(direct, expected_direct)
            same_maps(extracted, expected)
    assert all(module.training for module in model.modules())


def test_channel_stats() -> None:
    model = tiny().train()
    datasets = [TensorDataset(torch.cat(inputs(16, 3)[i:])) for i in range(THREADS - 1)]
    graph = fxmaps.analyze(model, inputs(16, 1)[0])
    before = snapshot(model)

    def stats(data: TensorDataset) -> list[torch.Tensor]:
        result = fxmaps.channel_stats(graph, data, layers="*", batch_size=2, progress=False)
        return [t for name in result for t in vars(result[name]).values()]

    serial = [stats(data) for data in datasets]
    assert_unchanged(model, before)
    found = together([partial(stats, data) for data in datasets])
    for got, expected in zip(found, serial, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert_unchanged(model, before)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_captured_model(mode: str) -> None:
    """Extraction from a captured model runs it through shadows of its modules and keeps
    what one run found per thread."""
    model = branchy().train(mode == "train")
    xs = inputs(16)
    graph = fxmaps.analyze(model, xs[0])
    assert graph.capture is not None
    before = snapshot(model)
    serial = [fxmaps.extract(graph, x, layers="*") for x in xs]
    assert "mul" in serial[0]  # a map made by the forward that ran as Python
    calls = [partial(fxmaps.extract, graph, x, layers="*") for x in xs]
    for _ in range(2):
        for got, expected in zip(together(calls), serial, strict=True):
            same_maps(got, expected)
        assert_unchanged(model, before)


def test_one_extractor_of_a_captured_model() -> None:
    model = branchy().eval()
    xs = inputs(16)
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(model, xs[0]), "*")
    before = snapshot(model)
    serial = [extractor(x) for x in xs]
    found = together([partial(extractor, x) for x in xs])
    for got, expected in zip(found, serial, strict=True):
        same_maps(got, expected)
    assert_unchanged(model, before)


def test_benchmark_leaves_a_training_model_as_it_was() -> None:
    model = tiny().train()
    before = snapshot(model)
    fxmaps.benchmark_extraction(model, inputs(16, 1)[0], layers="*", repeat=1, warmup=0)
    assert_unchanged(model, before)


def test_a_trace_and_a_run_of_two_models() -> None:
    """torch.fx patches ``nn.Module.__call__`` and ``__getattr__`` process-wide while it
    traces, so a trace of one model and a run of another in two threads broke both (the
    trace failed or lost a module, the run hit the tracer): fxmaps's calls take turns."""
    first, second = resnet18(), tiny().train()
    x = inputs(32, 1)[0]
    traced = fxmaps.analyze(first)
    before = snapshot(second)
    serial = fxmaps.extract(second, x, layers="*")
    calls: list[Callable[[], Any]] = [
        *(partial(fxmaps.analyze, first) for _ in range(4)),
        *(partial(fxmaps.extract, second, x, layers="*") for _ in range(4)),
    ]
    found = together(calls)
    for graph in found[:4]:
        assert [layer.name for layer in graph.layers()] == [layer.name for layer in traced.layers()]
        assert not graph.opaque
    for maps in found[4:]:
        same_maps(maps, serial)
    assert model_lock(first) is model_lock(second)
    assert_unchanged(second, before)


class _FunctionalHead(nn.Module):
    """A conv, then a weight read by a function (a get_attr node) and an attention."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, groups=1)
        self.weight = nn.Parameter(torch.randn(4, 8))
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv(x).flatten(2).transpose(1, 2)
        tokens = nn.functional.linear(tokens, self.weight)
        return self.attention(tokens, tokens, tokens, need_weights=False)[0]


def test_classification_reads_no_parameter_as_an_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While any thread traces, torch.fx patches ``nn.Module.__getattr__`` process-wide, and
    a parameter read as an attribute in another thread is that trace's proxy (found by
    analyze and extract on one model in threads: MACs of 0, the trace's graph given nodes
    of the other call). The passes that run outside the model's lock read registries."""
    from fxmaps.classify import note_structure
    from fxmaps.facts import facts

    graph = fxmaps.analyze(_FunctionalHead(), torch.randn(2, 3, 6, 6))
    nodes = list(graph.graph_module.graph.nodes)
    before = [(facts(n).params, facts(n).macs) for n in nodes]
    assert graph.macs() > 0
    assert any(params for params, _ in before)
    original = nn.Module.__getattr__

    def tracing_elsewhere(module: nn.Module, name: str) -> Any:
        found = original(module, name)
        return object() if isinstance(found, torch.Tensor) else found  # as a proxy would

    monkeypatch.setattr(nn.Module, "__getattr__", tracing_elsewhere)
    note_structure(graph.graph_module)
    monkeypatch.undo()
    assert [(facts(n).params, facts(n).macs) for n in nodes] == before
