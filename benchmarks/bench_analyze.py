"""Benchmark ``fxmaps.analyze`` against torchvision's own tracing and a plain forward.

Two comparisons per model, each measured in the same run on the same model instance:

* ``fxmaps.analyze(model)`` (no example input: trace, name, classify, find blocks) versus
  ``torchvision.models.feature_extraction.get_graph_node_names(model)``, the reference for
  "trace a model and name its nodes". Target: within 2x.
* ``fxmaps.analyze(model, x)`` with a 1x3x224x224 input (adds shape propagation) versus a
  plain ``model(x)`` in eval mode under ``torch.no_grad``. A reference ratio; no target.

Method: each model is built once with random weights (``torchvision.models.get_model(name,
weights=None)``; nothing is downloaded) and put in eval mode. The two callables of a
comparison run interleaved by ``fxmaps.bench.harness.run_interleaved``: one warm-up round, then
``--repeat`` rounds whose order rotates (A, B, then B, A, ...), timed with
``time.perf_counter``, so load from other processes hits both sides alike. The report gives
median, min and max per callable, the ratio as the median over rounds of each round's ratio,
and the graph size (``len(g)``) with the time per node, so scaling with graph size shows.

Run from the repository root::

    python benchmarks/bench_analyze.py            # all models, 7 rounds
    python benchmarks/bench_analyze.py --quick    # resnet50 and vit_b_16, 3 rounds
    python benchmarks/bench_analyze.py --models resnet18 --repeat 11 --out /tmp/bench
    python benchmarks/bench_analyze.py --threads 1   # steadier forward timings on a busy machine

It prints a markdown table and writes ``bench_analyze.json`` and ``bench_analyze.md``
into ``--out`` (default ``benchmarks/results``). Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import platform
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import get_graph_node_names

import fxmaps
from fxmaps.bench.harness import (
    Environment,
    Timing,
    format_table,
    record_environment,
    run_interleaved,
    write_results,
)

MODELS = ("resnet50", "resnet152", "efficientnet_b7", "convnext_base", "vit_b_16")
QUICK_MODELS = ("resnet50", "vit_b_16")
INPUT_SHAPE = (1, 3, 224, 224)
TARGET_RATIO = 2.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

ANALYZE = "fxmaps.analyze(model)"
NODE_NAMES = "get_graph_node_names(model)"
ANALYZE_INPUT = "fxmaps.analyze(model, x)"
FORWARD = "model(x)"
# (measured, reference) pairs; each pair is interleaved on its own.
COMPARISONS = ((ANALYZE, NODE_NAMES), (ANALYZE_INPUT, FORWARD))


@dataclass(frozen=True)
class ModelResult:
    """Timings of every callable on one model, and the size of its graph."""

    model: str
    nodes: int
    reference_nodes: int
    timings: dict[str, Timing]

    def ratio(self, measured: str, reference: str) -> float:
        """The median over rounds of ``measured``'s time over ``reference``'s in that round."""
        return self.timings[measured].ratio_to(self.timings[reference])

    def us_per_node(self, name: str) -> float:
        return self.timings[name].median / self.nodes * 1e6


def node_names_quietly(model: nn.Module) -> tuple[list[str], list[str]]:
    """torchvision's reference, without its UserWarnings (train/eval graphs differ)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train, eval_ = get_graph_node_names(model)
    return list(train), list(eval_)


def forward_no_grad(model: nn.Module, x: torch.Tensor) -> object:
    with torch.no_grad():
        return model(x)


def build_model(name: str) -> nn.Module:
    model: nn.Module = torchvision.models.get_model(name, weights=None)
    return model.eval()


def bench_model(name: str, repeat: int) -> ModelResult:
    """Time both comparisons on one freshly built model."""
    model = build_model(name)
    x = torch.randn(INPUT_SHAPE)
    callables: dict[str, Callable[[], object]] = {
        ANALYZE: lambda: fxmaps.analyze(model),
        NODE_NAMES: lambda: node_names_quietly(model),
        ANALYZE_INPUT: lambda: fxmaps.analyze(model, x),
        FORWARD: lambda: forward_no_grad(model, x),
    }
    timings: dict[str, Timing] = {}
    for pair in COMPARISONS:
        timings.update(run_interleaved({key: callables[key] for key in pair}, rounds=repeat))
    reference = node_names_quietly(model)[1]  # (train names, eval names)
    return ModelResult(name, len(fxmaps.analyze(model)), len(reference), timings)


def environment() -> Environment:
    return record_environment("cpu", processor=platform.processor() or platform.machine())


def result_dict(result: ModelResult) -> dict[str, Any]:
    return {
        "nodes": result.nodes,
        "reference_nodes_eval": result.reference_nodes,
        "timings": {name: timing.to_json() for name, timing in result.timings.items()},
        "ratios": {f"{m} / {r}": result.ratio(m, r) for m, r in COMPARISONS},
        "us_per_node": {name: result.us_per_node(name) for name in result.timings},
    }


def summary_table(results: Sequence[ModelResult]) -> str:
    """One row per model: graph size, medians and ratios."""
    rows = [
        [
            r.model,
            r.nodes,
            _ms(r, ANALYZE),
            _ms(r, NODE_NAMES),
            f"{r.ratio(ANALYZE, NODE_NAMES):.2f}x",
            "yes" if r.ratio(ANALYZE, NODE_NAMES) <= TARGET_RATIO else "NO",
            f"{r.us_per_node(ANALYZE):.0f}",
            _ms(r, ANALYZE_INPUT),
            _ms(r, FORWARD),
            f"{r.ratio(ANALYZE_INPUT, FORWARD):.2f}x",
        ]
        for r in results
    ]
    headers = [
        "model",
        "nodes",
        "analyze ms",
        "get_graph_node_names ms",
        "analyze / gnn",
        f"<= {TARGET_RATIO:g}x",
        "analyze µs/node",
        "analyze(x) ms",
        "forward ms",
        "analyze(x) / forward",
    ]
    return format_table(rows, headers, align=["left", *["right"] * (len(headers) - 1)])


def detail_table(results: Sequence[ModelResult]) -> str:
    """One row per model and callable: median, min and max in milliseconds."""
    rows = [
        [r.model, name, *(f"{s * 1e3:.1f}" for s in (t.median, t.min, t.max))]
        for r in results
        for name, t in r.timings.items()
    ]
    headers = ["model", "callable", "median ms", "min ms", "max ms"]
    return format_table(rows, headers, align=["left", "left", "right", "right", "right"])


def _ms(result: ModelResult, name: str) -> str:
    return f"{result.timings[name].median * 1e3:.1f}"


def markdown(results: Sequence[ModelResult], env: Environment, repeat: int) -> str:
    setup = (
        f"{env.describe()}; median of {repeat} interleaved rounds after warm-up, ratios the "
        f"median over rounds of each round's ratio; input {'x'.join(map(str, INPUT_SHAPE))}, "
        "eval mode, random weights."
    )
    return (
        f"# fxmaps.analyze benchmark\n\n{setup}\n\n{summary_table(results)}\n\n"
        f"## Per callable\n\n{detail_table(results)}\n"
    )


def save_results(out: Path, results: Sequence[ModelResult], env: Environment, repeat: int) -> None:
    config = {"repeat": repeat, "input_shape": list(INPUT_SHAPE), "target_ratio": TARGET_RATIO}
    data = {
        "environment": env.to_json(),
        "config": config,
        "models": {r.model: result_dict(r) for r in results},
    }
    write_results(out, "bench_analyze", markdown(results, env, repeat), data)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        metavar="NAME",
        help="torchvision model names (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (default: 7)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: torch's own)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{' and '.join(QUICK_MODELS)} only, 3 rounds"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeat = list(QUICK_MODELS), 3
    unknown = sorted(set(args.models) - set(torchvision.models.list_models()))
    if unknown:
        parser.error(f"unknown torchvision models {unknown}; see torchvision.models.list_models()")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        results.append(bench_model(name, args.repeat))
    env = environment()
    print(markdown(results, env, args.repeat))
    save_results(args.out, results, env, args.repeat)
    print(f"wrote {args.out / 'bench_analyze.json'} and bench_analyze.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
