"""Timing extraction against a plain forward pass and the forward-hook approach.

``benchmark_extraction`` runs, in one process and interleaved (the order rotates
every round, after warm-up): the model's plain forward pass, fxmaps's extractor,
and forward hooks that keep the output of every chosen module (what people write
by hand; it cannot see functional nodes and keeps tensors later ops overwrite).
It reports medians, min-max, ratios to the plain forward, and the peak memory of
one more run of each: CUDA's allocator statistics, or on the CPU the growth of
the resident set size, sampled every millisecond after returning free memory to
the system (Linux; approximate).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import platform
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate
from torch import nn

from fxmaps.errors import FxmapsWarning, InputError
from fxmaps.extract.extractor import FeatureExtractor, checked_inputs
from fxmaps.files import atomic_path
from fxmaps.graph import ModelGraph, Selection, graph_for_inputs, select_layers
from fxmaps.graph.checks import ExampleInput, as_example_inputs, check_module

__all__ = ["ExtractionBenchmark", "Timing", "benchmark_extraction"]

FORWARD, FXMAPS, HOOKS = "plain forward", "fxmaps", "forward hooks"


@dataclass(frozen=True)
class Timing:
    """Seconds per run of one callable, and its peak memory in bytes (if measured)."""

    seconds: tuple[float, ...]
    peak_bytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class ExtractionBenchmark:
    """What :func:`benchmark_extraction` measured, with the environment it ran in."""

    model: str
    input_shapes: list[list[int]]
    layers: int
    hooked: int
    retained_bytes: int
    timings: dict[str, Timing]
    environment: dict[str, Any] = field(default_factory=dict)

    def ratio(self, name: str) -> float:
        """The median over rounds of ``name``'s time over the plain forward's in that round.

        Each round runs every callable once, seconds apart, so pairing them by round
        cancels the slow drifts of a busy machine that a ratio of medians keeps.
        """
        pairs = zip(self.timings[name].seconds, self.timings[FORWARD].seconds, strict=True)
        return statistics.median(a / b for a, b in pairs)

    def table(self) -> str:
        """The results as a table (tabulate's GitHub format)."""
        rows = [
            [
                name,
                f"{t.median * 1e3:.1f}",
                f"{min(t.seconds) * 1e3:.1f} - {max(t.seconds) * 1e3:.1f}",
                f"{self.ratio(name):.3f}x",
                _mib(t.peak_bytes),
            ]
            for name, t in self.timings.items()
        ]
        headers = ["", "median ms", "min - max ms", "/ forward (median of rounds)", "peak memory"]
        caption = (
            f"{self.model}, input {' + '.join('x'.join(map(str, s)) for s in self.input_shapes)}, "
            f"{self.layers} maps ({self.hooked} reachable by hooks), "
            f"{_mib(self.retained_bytes)} kept; {len(next(iter(self.timings.values())).seconds)} "
            f"interleaved rounds on {self.environment.get('device', '?')}"
        )
        return f"{caption}\n\n{tabulate(rows, headers=headers, tablefmt='github')}"

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready data, for CI jobs that track it."""
        return {
            "model": self.model,
            "input_shapes": self.input_shapes,
            "layers": self.layers,
            "hooked": self.hooked,
            "retained_bytes": self.retained_bytes,
            "environment": self.environment,
            "timings": {
                name: {
                    "seconds": list(t.seconds),
                    "median": t.median,
                    "ratio_to_forward": self.ratio(name),
                    "ratio_of_medians": t.median / self.timings[FORWARD].median,
                    "peak_bytes": t.peak_bytes,
                }
                for name, t in self.timings.items()
            },
        }

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``, whole (a temporary file, then a rename)."""
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def benchmark_extraction(
    model_or_graph: nn.Module | ModelGraph,
    inputs: ExampleInput,
    *,
    layers: Selection = "conv",
    repeat: int = 7,
    warmup: int = 2,
    memory: bool = True,
    name: str | None = None,
    **options: Any,
) -> ExtractionBenchmark:
    """Time extraction of ``layers`` against a plain forward and the forward-hook approach.

    Args:
        model_or_graph: The model, or its :class:`ModelGraph`.
        inputs: The batch to run.
        layers: What to extract (see :func:`fxmaps.extract`).
        repeat: Timed rounds; each runs every callable once.
        warmup: Untimed rounds first.
        memory: Also measure each callable's peak memory in one more run.
        name: The model's name in the report.
        **options: Map controls passed to :class:`FeatureExtractor` (``channels``, ...,
            ``max_bytes``).

    The inputs are checked as :func:`fxmaps.extract` checks them, and one
    extraction runs before the timed rounds, so that a wrong input fails with an
    fxmaps error (``ShapeError``, ``MemoryLimitError``, ...) before any timing.
    """
    batch = as_example_inputs(inputs, argument="inputs")
    if batch is None or repeat < 1:
        raise InputError(
            "benchmark_extraction needs inputs and repeat >= 1",
            argument="inputs" if batch is None else "repeat",
            got="None" if batch is None else str(repeat),
        )
    if not isinstance(model_or_graph, ModelGraph):
        check_module(model_or_graph, "benchmark_extraction()")
    graph = (
        model_or_graph
        if isinstance(model_or_graph, ModelGraph)
        else graph_for_inputs(model_or_graph, len(batch))
    )
    model = graph.model
    chosen = select_layers(graph, layers)
    extractor = FeatureExtractor(graph, chosen, **options)
    batch, notes = checked_inputs(graph, batch)
    for note in notes:
        warnings.warn(note, FxmapsWarning, stacklevel=2)
    hooked = sorted({layer.target for layer in chosen if layer.module is not None})
    callables: dict[str, Callable[[], Any]] = {
        FORWARD: lambda: model(*batch),
        FXMAPS: lambda: extractor(*batch),
        HOOKS: lambda: _hooked_forward(model, hooked, batch),
    }
    device = batch[0].device
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(graph.train)
        with torch.no_grad():
            extractor._run(batch)  # fails here, explained, if the input does not fit
            seconds = _interleaved(callables, repeat, warmup, device)
            peaks = {k: _peak_memory(f, device) if memory else None for k, f in callables.items()}
            retained = extractor(*batch).nbytes
    finally:
        for module, mode in saved:
            module.training = mode
    return ExtractionBenchmark(
        model=name or type(model).__name__,
        input_shapes=[list(t.shape) for t in batch],
        layers=len(chosen),
        hooked=sum(1 for layer in chosen if layer.module is not None),
        retained_bytes=retained,
        timings={k: Timing(tuple(seconds[k]), peaks[k]) for k in callables},
        environment=_environment(device),
    )


def _hooked_forward(model: nn.Module, targets: list[str], batch: tuple[torch.Tensor, ...]) -> Any:
    kept: list[Any] = []
    handles = [
        model.get_submodule(t).register_forward_hook(lambda _m, _i, out: kept.append(out))
        for t in targets
    ]
    try:
        model(*batch)
    finally:
        for handle in handles:
            handle.remove()
    return kept


def _interleaved(
    callables: dict[str, Callable[[], Any]], repeat: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    names = list(callables)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeat):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            result = callables[name]()
            _sync(device)
            elapsed = time.perf_counter() - start
            del result
            if round_ >= warmup:
                seconds[name].append(elapsed)
    return seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(run: Callable[[], Any], device: torch.device) -> int | None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = run()
        torch.cuda.synchronize(device)
        del result
        return int(torch.cuda.max_memory_allocated(device) - before)
    with _rss_sampler() as peak:
        result = run()
        del result
    return peak()


@contextlib.contextmanager
def _rss_sampler() -> Iterator[Callable[[], int | None]]:
    """Yield a getter for the peak growth of the resident set size during the block."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        yield lambda: None
        return
    page = _page_size()
    _trim()
    baseline = _rss(statm, page)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            peak[0] = max(peak[0], _rss(statm, page))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: max(peak[0], _rss(statm, page)) - baseline
    finally:
        peak[0] = max(peak[0], _rss(statm, page))
        done.set()
        sampler.join()


def _rss(statm: Path, page: int) -> int:
    return int(statm.read_text().split()[1]) * page


def _page_size() -> int:
    import resource

    return resource.getpagesize()


def _trim() -> None:
    """Return free heap memory to the system (glibc), so growth shows in the RSS."""
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def _environment(device: torch.device) -> dict[str, Any]:
    described = str(device)
    if device.type == "cuda":
        described = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        described = f"cpu ({torch.get_num_threads()} threads)"
    return {
        "device": described,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"
