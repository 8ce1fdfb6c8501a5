"""channel_stats throughput against a plain inference loop, peak memory as data grows, and torchrun.

1. **Throughput.** Images per second of ``fxmaps.channel_stats`` against a plain loop
   that runs the model over the same DataLoader (same batch size, same workers) and
   keeps nothing. Target: at least 0.85 of the plain loop. Rounds alternate the two,
   after a warm-up; the ratio is the median over rounds of each round's ratio.
2. **Memory.** Peak resident memory of a child process that runs channel_stats over
   N and 20·N samples, where 20·N samples' maps would need far more memory than the
   N-sample run uses: the peak must stay flat.
3. **Processes.** The same statistics with ``torchrun --nproc_per_node 1`` and ``2``
   (gloo, CPU), wall time of the whole launch.

    python benchmarks/bench_stats.py            # all three
    python benchmarks/bench_stats.py --quick    # fewer samples and rounds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fxmaps.stats import channel_stats

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


class Noise(Dataset[tuple[torch.Tensor, int]]):
    """Deterministic random images: sample i is the same on every process."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        generator = torch.Generator().manual_seed(index)
        return torch.randn(3, self.size, self.size, generator=generator), index % 10


def model() -> nn.Module:
    torch.manual_seed(0)
    net: nn.Module = torchvision.models.resnet18()
    return net.eval()


def plain_loop(net: nn.Module, data: Dataset[Any], batch_size: int) -> None:
    with torch.no_grad():
        for inputs, _ in DataLoader(data, batch_size=batch_size):
            net(inputs)


def throughput(samples: int, size: int, batch_size: int, rounds: int) -> dict[str, Any]:
    net, data = model(), Noise(samples, size)

    def stats() -> None:
        channel_stats(net, data, layers="conv", batch_size=batch_size, progress=False)

    def plain() -> None:
        plain_loop(net, data, batch_size)

    runs: dict[str, list[float]] = {"channel_stats": [], "plain": []}
    ways: list[tuple[str, Callable[[], None]]] = [("channel_stats", stats), ("plain", plain)]
    for _, way in ways:
        way()  # warm-up
    for round_ in range(rounds):
        for name, way in ways if round_ % 2 == 0 else ways[::-1]:
            start = time.perf_counter()
            way()
            runs[name].append(time.perf_counter() - start)
    ratios = [p / s for p, s in zip(runs["plain"], runs["channel_stats"], strict=True)]
    return {
        "model": "resnet18",
        "layers": "conv (17 nodes)",
        "samples": samples,
        "input": f"3x{size}x{size}",
        "batch_size": batch_size,
        "images_per_s": {k: samples / statistics.median(v) for k, v in runs.items()},
        "seconds": runs,
        "relative_throughput": statistics.median(ratios),
    }


MEMORY_CHILD = """
import resource, sys, torch, torchvision
sys.path.insert(0, {root!r})
from benchmarks.bench_stats import Noise, model
from fxmaps.stats import channel_stats
net, data = model(), Noise(int(sys.argv[1]), 32)
channel_stats(net, data, layers="conv", batch_size=32, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(samples: int) -> dict[str, Any]:
    """Peak RSS of a fresh process streaming ``samples`` and ``20 * samples`` images."""
    code = MEMORY_CHILD.format(root=str(ROOT))
    net = model()
    with torch.no_grad():
        maps_bytes = _conv_map_bytes(net, 32)
    rows = []
    for count in (samples, 20 * samples):
        done = subprocess.run(
            [sys.executable, "-c", code, str(count)], capture_output=True, text=True, check=True
        )
        peak_mib = int(done.stdout.split()[-1]) / 1024
        rows.append(
            {
                "samples": count,
                "peak_rss_mib": peak_mib,
                "all_maps_would_need_mib": count * maps_bytes / 2**20,
            }
        )
    return {"input": "3x32x32", "batch_size": 32, "rows": rows}


def _conv_map_bytes(net: nn.Module, size: int) -> int:
    total = 0

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    net(torch.randn(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return total


TORCHRUN_WORKER = """
import sys
sys.path.insert(0, {root!r})
from benchmarks.bench_stats import Noise, model
from fxmaps.stats import channel_stats
channel_stats(model(), Noise(int(sys.argv[1]), 64), layers="conv", batch_size=32, progress=False)
"""


def processes(samples: int) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        worker = Path(folder) / "worker.py"
        worker.write_text(textwrap.dedent(TORCHRUN_WORKER.format(root=str(ROOT))))
        for count in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // count))}
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            command += ["--nproc_per_node", str(count), str(worker), str(samples)]
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            rows.append({"processes": count, "seconds": seconds, "images_per_s": samples / seconds})
    return {"samples": samples, "input": "3x64x64", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quick = args.quick
    result = {
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "throughput": throughput(256 if quick else 512, 64, 64, 3 if quick else 5),
        "memory": memory(50 if quick else 100),
        "processes": processes(256 if quick else 512),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_stats.json").write_text(json.dumps(result, indent=2))
    table = _markdown(result)
    (args.out / "bench_stats.md").write_text(table)
    print(table)


def _markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    t = result["throughput"]
    lines = [
        "# channel_stats benchmark",
        "",
        f"torch {env['torch']}, Python {env['python']}, {env['cpus']} CPUs, "
        f"{env['threads']} threads, load {env['load'][0]:.2f}, {env['date']}.",
        "",
        f"## Throughput: {t['model']}, {t['layers']}, {t['samples']} samples of {t['input']}, "
        f"batch {t['batch_size']}",
        "",
        "| loop | images/s |",
        "|---|---:|",
        f"| plain inference | {t['images_per_s']['plain']:.0f} |",
        f"| channel_stats | {t['images_per_s']['channel_stats']:.0f} |",
        "",
        f"channel_stats runs at **{t['relative_throughput']:.2f}** of the plain loop "
        "(median of per-round ratios; target >= 0.85).",
        "",
        "## Peak memory while streaming (resnet18 convs, 3x32x32, batch 32)",
        "",
        "| samples | peak RSS | all conv maps would need |",
        "|---:|---:|---:|",
    ]
    for row in result["memory"]["rows"]:
        lines.append(
            f"| {row['samples']} | {row['peak_rss_mib']:.0f} MiB "
            f"| {row['all_maps_would_need_mib']:.0f} MiB |"
        )
    p = result["processes"]
    lines += [
        "",
        f"## torchrun, {p['samples']} samples of {p['input']} (whole launch)",
        "",
        "| processes | seconds | images/s |",
        "|---:|---:|---:|",
    ]
    for row in p["rows"]:
        lines.append(f"| {row['processes']} | {row['seconds']:.1f} | {row['images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
