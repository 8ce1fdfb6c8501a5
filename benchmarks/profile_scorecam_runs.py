"""What Score-CAM's masked runs cost, run by run: the forward passes alone.

Score-CAM on resnet18's ``layer4`` at 112x112 runs 512 masked inputs through the whole
model. This times those 512 forward passes alone, in one process, interleaved
(``fxmaps.bench.harness.run_interleaved``), as pytorch-grad-cam runs them (the model,
batches of 16) and as fxmaps can (its traced graph in channels-last batches of 32, with
the batch norms folded by ``fxmaps.attribute.fold.folded``, under bfloat16 autocast),
plus torch's own ``optimize_for_inference`` (oneDNN layouts) for comparison. Ratios are
against the first row.

    python benchmarks/profile_scorecam_runs.py --threads 1 --repeat 3
"""

from __future__ import annotations

import argparse
import copy
import warnings
from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torch.fx.experimental.optimization import optimize_for_inference

import fxmaps
from fxmaps.attribute.fold import folded
from fxmaps.bench.harness import format_table, record_environment, run_interleaved


def batches(
    run: Callable[[torch.Tensor], object], x: torch.Tensor, size: int, *, last: bool, bf16: bool
) -> Callable[[], None]:
    """Every row of ``x`` through ``run`` in batches of ``size``, in inference mode."""

    def call() -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        with torch.inference_mode(), autocast:
            for start in range(0, len(x), size):
                batch = x[start : start + size]
                run(batch.contiguous(memory_format=torch.channels_last) if last else batch)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model: nn.Module = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(512, 3, 112, 112)
    graph = fxmaps.analyze(model, x[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onednn = optimize_for_inference(copy.deepcopy(model))
    run = folded(graph.graph_module)
    callables = {
        "model, batches of 16 (pytorch-grad-cam)": batches(model, x, 16, last=False, bf16=False),
        "graph, channels-last, 32": batches(graph.graph_module, x, 32, last=True, bf16=False),
        "folded graph, channels-last, 32 (fxmaps)": batches(run, x, 32, last=True, bf16=False),
        "optimize_for_inference, 32": batches(onednn, x, 32, last=False, bf16=False),
        "folded graph, bf16 autocast, 32": batches(run, x, 32, last=True, bf16=True),
    }
    timings = run_interleaved(callables, rounds=args.repeat)
    first = next(iter(timings.values()))
    rows = [[name, f"{t.median:.2f}", f"{first.ratio_to(t):.2f}x"] for name, t in timings.items()]
    print(record_environment("cpu").describe())
    print(format_table(rows, ["512 masked runs", "median s", "speed-up"]))


if __name__ == "__main__":
    main()
