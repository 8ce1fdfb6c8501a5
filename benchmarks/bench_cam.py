"""Benchmark ``fxmaps.cam`` against pytorch-grad-cam on the same layer, in one run.

Two comparisons, each on one model instance (random weights, eval mode, CPU):

* Grad-CAM on resnet50, a batch of 8 at 224x224, at ``layer4`` (what ``layer=None``
  chooses): ``fxmaps.cam(graph, x, method="gradcam")`` versus
  ``pytorch_grad_cam.GradCAM(model, [model.layer4])(x)``. Target: at least 1.5x faster
  (goal 2.5x). fxmaps runs the part before the layer without autograd and
  backpropagates through the part after it only, with no parameter gradients;
  pytorch-grad-cam backpropagates through the whole model, parameters included.
* Score-CAM on resnet18, one image at 112x112, at ``layer4``: ``fxmaps.cam(graph, x,
  method="scorecam")`` versus ``pytorch_grad_cam.ScoreCAM(model, [model.layer4])(x)``
  (its default batch of 16 masked inputs). Target: at least 2x. Both run every masked
  input through the whole model (the masks multiply the input); fxmaps batches them
  (``batch_size=32``, channels-last), in inference mode, without hooks, and runs the all-zero
  input of constant channels once; the graph it runs has each batch norm folded into the
  convolution before it (``fxmaps/attribute/fold.py``).
* The same Score-CAM with fxmaps's masked runs under ``torch.autocast`` to bfloat16
  (pytorch-grad-cam in float32 as before): what a user trades for speed. The table says
  how well its maps agree with float32's (Pearson correlation, lowest over samples).

Both sides explain each sample's top class; the graph is analysed once, before timing
(as a user reuses it). Callables run interleaved by
``fxmaps.bench.harness.run_interleaved`` (one warm-up round, then ``--repeat`` rounds,
order rotating); the ratio is the median over rounds of each round's ratio.

Run from the repository root::

    python benchmarks/bench_cam.py --threads 1              # 5 rounds
    python benchmarks/bench_cam.py --threads 1 --repeat 3 --out /tmp/bench

It prints a markdown table and writes ``bench_cam.json`` and ``bench_cam.md`` into
``--out`` (default ``benchmarks/results``). Timings are never asserted in tests.
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

import fxmaps
from fxmaps.bench.harness import (
    Environment,
    Timing,
    format_table,
    record_environment,
    run_interleaved,
    write_results,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Comparison:
    """One method on one model and batch; ``target`` the speed-up wanted."""

    method: str
    model: str
    batch: int
    side: int
    target: float
    oracle: str
    autocast: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} (bf16 autocast)" if self.autocast else self.method


COMPARISONS = (
    Comparison("gradcam", "resnet50", 8, 224, 1.5, "GradCAM"),
    Comparison("scorecam", "resnet18", 1, 112, 2.0, "ScoreCAM"),
    Comparison("scorecam", "resnet18", 1, 112, 2.0, "ScoreCAM", autocast=True),
)


def build(name: str) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model: nn.Module = torchvision.models.get_model(name, weights=None)
    return model.eval()


def oracle_call(model: nn.Module, kind: str, x: torch.Tensor) -> Callable[[], object]:
    """pytorch-grad-cam's explainer at ``layer4``, built and released each call."""
    import pytorch_grad_cam

    def run() -> object:
        with getattr(pytorch_grad_cam, kind)(model=model, target_layers=[model.layer4]) as cam:
            return cam(input_tensor=x, targets=None)

    return run


def bench(comparison: Comparison, repeat: int) -> tuple[dict[str, Timing], float | None]:
    """The timings, and for an autocast run the lowest correlation of its maps with
    float32's."""
    torch.manual_seed(0)
    model = build(comparison.model)
    x = torch.randn(comparison.batch, 3, comparison.side, comparison.side)
    graph = fxmaps.analyze(model, x)
    layer = fxmaps.cam(graph, x[:1], method="eigencam").layer
    print(f"  {comparison.model}: fxmaps chooses {layer!r}", file=sys.stderr)

    def run() -> fxmaps.CamResult:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=comparison.autocast):
            return fxmaps.cam(graph, x, method=comparison.method)

    agreement = None
    if comparison.autocast:
        exact = fxmaps.cam(graph, x, method=comparison.method).maps
        agreement = min(correlation(a, b) for a, b in zip(run().maps, exact, strict=True))
    callables: dict[str, Callable[[], object]] = {
        "fxmaps": run,
        "pytorch-grad-cam": oracle_call(model, comparison.oracle, x),
    }
    return run_interleaved(callables, rounds=repeat), agreement


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps."""
    pair = torch.stack([a.flatten().double(), b.flatten().double()])
    return float(torch.corrcoef(pair)[0, 1])


Results = Sequence[tuple[Comparison, tuple[dict[str, Timing], float | None]]]


def table(results: Results) -> str:
    rows = []
    for c, (timings, agreement) in results:
        ratio = timings["pytorch-grad-cam"].ratio_to(timings["fxmaps"])
        rows.append(
            [
                c.label,
                c.model,
                f"{c.batch}x3x{c.side}x{c.side}",
                f"{timings['fxmaps'].median * 1e3:.0f}",
                f"{timings['pytorch-grad-cam'].median * 1e3:.0f}",
                f"{ratio:.2f}x",
                f">= {c.target:g}x",
                "yes" if ratio >= c.target else "NO",
                "" if agreement is None else f"{agreement:.4f}",
            ]
        )
    headers = ["method", "model", "input", "fxmaps ms", "pytorch-grad-cam ms", "speed-up",
               "target", "met", "maps vs float32"]  # fmt: skip
    return format_table(rows, headers, align=["left", "left", "left", *["right"] * 6])


def markdown(results: Results, env: Environment, repeat: int) -> str:
    setup = (
        f"{env.describe()}; median of {repeat} interleaved rounds after warm-up; speed-up the "
        "median over rounds of pytorch-grad-cam's time over fxmaps's; layer4, top class, "
        "eval mode, random weights."
    )
    return f"# fxmaps.cam benchmark\n\n{setup}\n\n{table(results)}\n"


def save(out: Path, results: Results, env: Environment, repeat: int) -> None:
    data: dict[str, Any] = {
        "environment": env.to_json(),
        "config": {"repeat": repeat},
        "comparisons": {
            f"{c.label}/{c.model}": {
                "input": [c.batch, 3, c.side, c.side],
                "target": c.target,
                "timings": {name: t.to_json() for name, t in timings.items()},
                "speedup": timings["pytorch-grad-cam"].ratio_to(timings["fxmaps"]),
                "maps_vs_float32": agreement,
            }
            for c, (timings, agreement) in results
        },
    }
    write_results(out, "bench_cam", markdown(results, env, repeat), data)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: torch's own)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=sorted({c.method for c in COMPARISONS}),
        help="which methods' comparisons",
    )
    args = parser.parse_args(argv)
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
    for comparison in COMPARISONS:
        if comparison.method in args.methods:
            print(f"benchmarking {comparison.label} on {comparison.model} ...", file=sys.stderr)
            results.append((comparison, bench(comparison, args.repeat)))
    env = record_environment("cpu", processor=platform.processor() or platform.machine())
    print(markdown(results, env, args.repeat))
    save(args.out, results, env, args.repeat)
    print(f"wrote {args.out / 'bench_cam.json'} and bench_cam.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
