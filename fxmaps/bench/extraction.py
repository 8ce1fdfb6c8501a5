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
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fxmaps.bench.harness import (
    Environment,
    Timing,
    format_mib,
    format_table,
    record_environment,
    run_interleaved,
    write_json,
)
from fxmaps.bench.record import describe_selection, to_record
from fxmaps.errors import FxmapsWarning, InputError
from fxmaps.extract.extractor import FeatureExtractor
from fxmaps.extract.failures import checked_inputs
from fxmaps.graph import ModelGraph, Selection, graph_for_inputs, require_layers
from fxmaps.graph.checks import check_module
from fxmaps.trace.inputs import ExampleInput, Inputs, as_inputs
from fxmaps.trace.state import preserved_state

__all__ = ["ExtractionBenchmark", "benchmark_extraction", "hooked_forward"]

FORWARD, FXMAPS, HOOKS = "plain forward", "fxmaps", "forward hooks"


@dataclass(frozen=True)
class ExtractionBenchmark:
    """What :func:`benchmark_extraction` measured, with the environment it ran in."""

    model: str
    input_shapes: list[list[int]]
    layers: int
    hooked: int
    retained_bytes: int
    timings: dict[str, Timing]
    environment: Environment | None = None
    selection: tuple[str, ...] = ()
    warmup: int = 0

    def ratio(self, name: str) -> float:
        """The median over rounds of ``name``'s time over the plain forward's in that round.

        Each round runs every callable once, seconds apart, so pairing them by round
        cancels the slow drifts of a busy machine that a ratio of medians keeps.
        """
        return self.timings[name].ratio_to(self.timings[FORWARD])

    def table(self) -> str:
        """The results as a markdown table, under a caption and the environment's line."""
        rows = [
            [
                name,
                f"{t.median * 1e3:.1f}",
                f"{t.min * 1e3:.1f} - {t.max * 1e3:.1f}",
                f"{self.ratio(name):.3f}x",
                format_mib(t.peak_bytes),
            ]
            for name, t in self.timings.items()
        ]
        headers = ["", "median ms", "min - max ms", "/ forward (median of rounds)", "peak memory"]
        align = ["left", "right", "right", "right", "right"]
        env = self.environment
        caption = (
            f"{self.model}, input {' + '.join('x'.join(map(str, s)) for s in self.input_shapes)}, "
            f"{self.layers} maps ({self.hooked} reachable by hooks), "
            f"{format_mib(self.retained_bytes)} kept; "
            f"{len(next(iter(self.timings.values())).seconds)} interleaved rounds after warm-up"
        )
        lines = [caption, env.describe() if env else "", format_table(rows, headers, align=align)]
        return "\n\n".join(line for line in lines if line)

    def to_json(self) -> dict[str, Any]:
        """The versioned record for CI jobs (:func:`fxmaps.bench.record.to_record`)."""
        return to_record(self)

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``, whole (a temporary file, then a rename)."""
        write_json(path, self.to_json())


def benchmark_extraction(
    model_or_graph: nn.Module | ModelGraph,
    inputs: ExampleInput,
    *,
    layers: Selection = "conv",
    repeat: int = 7,
    warmup: int = 2,
    memory: bool = True,
    name: str | None = None,
    on_round: Callable[[int, int], object] | None = None,
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
        on_round: Called after each round (warm-up ones included) with the rounds
            done and the rounds in all, for a progress line.
        **options: Map controls passed to :class:`FeatureExtractor` (``channels``, ...,
            ``max_bytes``).

    The inputs are checked as :func:`fxmaps.extract` checks them, and one
    extraction runs before the timed rounds, so that a wrong input fails with an
    fxmaps error (``ShapeError``, ``MemoryLimitError``, ...) before any timing.
    """
    model = model_or_graph.model if isinstance(model_or_graph, ModelGraph) else model_or_graph
    model = check_module(model, "benchmark_extraction()")
    given = as_inputs(inputs, model, argument="inputs")
    if given is None or repeat < 1:
        raise InputError(
            "benchmark_extraction needs inputs and repeat >= 1",
            argument="inputs" if given is None else "repeat",
            got="None" if given is None else str(repeat),
        )
    graph = (
        model_or_graph if isinstance(model_or_graph, ModelGraph) else graph_for_inputs(model, given)
    )
    chosen = require_layers(graph, layers)
    extractor = FeatureExtractor(graph, chosen, **options)
    batch, notes = checked_inputs(graph, given)
    for note in notes:
        warnings.warn(note, FxmapsWarning, stacklevel=2)
    hooked = sorted({layer.target for layer in chosen if layer.module is not None})
    callables: dict[str, Callable[[], Any]] = {
        FORWARD: lambda: batch.call(model),
        FXMAPS: lambda: batch.call(extractor),
        HOOKS: lambda: hooked_forward(model, hooked, batch),
    }
    device = batch.tensors()[0].device
    with preserved_state(model, train=graph.train), torch.no_grad():
        extractor._run(batch)  # fails here, explained, if the input does not fit
        timings = run_interleaved(
            callables, rounds=repeat, warmup=warmup, device=device, on_round=on_round
        )
        peaks = {k: _peak_memory(f, device) if memory else None for k, f in callables.items()}
        retained = batch.call(extractor).nbytes
    return ExtractionBenchmark(
        model=name or type(model).__name__,
        input_shapes=[list(t.shape) for t in batch.tensors()],
        layers=len(chosen),
        hooked=sum(1 for layer in chosen if layer.module is not None),
        retained_bytes=retained,
        timings={k: replace(t, peak_bytes=peaks[k]) for k, t in timings.items()},
        environment=record_environment(device),
        selection=tuple(describe_selection(layers)),
        warmup=warmup,
    )


def hooked_forward(
    model: nn.Module, targets: list[str], batch: Inputs, *, clone: bool = False
) -> list[Any]:
    """The forward-hook approach: run ``model`` keeping the output of each module in
    ``targets`` (cloned with ``clone``, as a careful hand-written version does)."""
    kept: list[Any] = []

    def keep(_module: nn.Module, _inputs: Any, out: Any) -> None:
        kept.append(out.detach().clone() if clone and isinstance(out, torch.Tensor) else out)

    handles = [model.get_submodule(t).register_forward_hook(keep) for t in targets]
    try:
        batch.call(model)
    finally:
        for handle in handles:
            handle.remove()
    return kept


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
