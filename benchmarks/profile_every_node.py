"""Where every-node extraction spends its time: page faults, copies, ops.

resnet50 at batch 8, every node (``layers="*"``), on the CPU. In one process,
interleaved (``fxmaps.bench.harness.run_interleaved``), it times:

* the plain forward,
* fxmaps as it runs (in-place ReLUs run out of place into resident memory),
* fxmaps with those ReLUs run out of place into fresh memory (how it ran before:
  a copy of each ``nn.ReLU`` with ``inplace=False``),
* the forward hooks,

and counts, for one more call of each, the minor page faults (``getrusage``: each is
one fresh page the kernel maps and zeroes), and the bytes returned. With
``--profile`` it prints torch.profiler's top CPU ops of one call of both fxmaps runs.

    python benchmarks/profile_every_node.py --threads 1 --repeat 7
    python benchmarks/profile_every_node.py --threads 1 --repeat 3 --profile
"""

from __future__ import annotations

import argparse
import resource
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn

import fxmaps
from fxmaps.bench.extraction import hooked_forward
from fxmaps.bench.harness import format_table, record_environment, run_interleaved
from fxmaps.extract.resident import ResidentReLU
from fxmaps.trace.inputs import Inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--profile", action="store_true", help="torch.profiler's top ops too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.resnet50().eval()
    x = torch.randn(args.batch, 3, 224, 224)
    graph = fxmaps.analyze(model)
    resident = fxmaps.FeatureExtractor(graph, "*")
    fresh = fxmaps.FeatureExtractor(fxmaps.analyze(model), "*")  # its own graph and cache
    _with_fresh_relus(fresh.graph_module)
    hooked = sorted({layer.target for layer in graph.layers() if layer.module is not None})
    runs: dict[str, Callable[[], Any]] = {
        "plain forward": lambda: model(x),
        "fxmaps (resident ReLUs)": lambda: resident(x),
        "fxmaps (fresh ReLUs)": lambda: fresh(x),
        "forward hooks": lambda: hooked_forward(model, hooked, Inputs((x,), {})),
    }
    with torch.no_grad():
        _check_equal(resident(x), fresh(x))
        timings = run_interleaved(runs, rounds=args.repeat, warmup=1)
        faults = {name: _faults(run) for name, run in runs.items()}
        kept = {name: _bytes(run()) for name, run in runs.items()}
        if args.profile:
            for name in ("fxmaps (resident ReLUs)", "fxmaps (fresh ReLUs)"):
                _profile(name, runs[name])
    forward = timings["plain forward"]
    rows = [
        [name, f"{t.median * 1e3:.0f}", f"{t.ratio_to(forward):.3f}x",
         f"{faults[name]:,}", f"{kept[name] / 2**20:.0f} MiB"]
        for name, t in timings.items()
    ]  # fmt: skip
    print(record_environment("cpu").describe())
    print(f"resnet50, batch {args.batch}, every node; {args.repeat} interleaved rounds\n")
    headers = ["", "median ms", "/ forward", "minor page faults a call", "returned"]
    print(format_table(rows, headers, align=["left", "right", "right", "right", "right"]))


def _with_fresh_relus(module: nn.Module) -> None:
    """Replace each resident ReLU of the extraction graph by ``nn.ReLU()`` (fresh memory)."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, ResidentReLU):
            setattr(module, name, nn.ReLU())
            replaced += 1
    if not replaced:
        raise RuntimeError("no resident ReLU to replace")


def _check_equal(a: Any, b: Any) -> None:
    if list(a) != list(b) or not all(torch.equal(a[k], b[k]) for k in a):
        raise RuntimeError("the two fxmaps runs disagree")


def _faults(run: Callable[[], Any]) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    result = run()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del result
    return after - before


def _bytes(result: Any) -> int:
    """Bytes of the distinct storages returned (a tensor kept under two names counts once)."""
    if isinstance(result, torch.Tensor):
        tensors = [result]
    elif isinstance(result, list):
        tensors = [t for t in result if isinstance(t, torch.Tensor)]
    else:
        tensors = list(result.values())
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _profile(name: str, run: Callable[[], Any]) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = run()
    del result
    print(f"\n{name}: top ops by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
