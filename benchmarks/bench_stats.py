"""channel_stats throughput against a plain inference loop, flat peak memory, and torchrun.

1. **Throughput.** Images per second of ``fxmaps.channel_stats`` against a plain loop
   that runs the model over the same DataLoader (same batch size, same workers) and
   keeps nothing. Target: at least 0.85 of the plain loop. Rounds alternate the two
   (``fxmaps.bench.harness.run_interleaved``), after a warm-up; the ratio is the median over
   rounds of each round's ratio.
2. **Memory.** Peak resident memory (``ru_maxrss``) of a fresh child process per run.
   A small run's peak is the budget; the second run streams enough samples that all
   their maps would need ``--factor`` (20) times that budget. Its peak must stay flat.
3. **Processes.** The same statistics with ``torchrun --nproc_per_node 1`` and ``2``
   (gloo, CPU), wall time of the whole launch.

    python benchmarks/bench_stats.py                 # all three
    python benchmarks/bench_stats.py --quick         # fewer samples and rounds
    python benchmarks/bench_stats.py --threads 1     # steadier on a busy machine
    python benchmarks/bench_stats.py --only memory   # one part (results not written)
"""

from __future__ import annotations

import argparse
import json
import math
import os
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

import fxmaps
from fxmaps.bench.harness import (
    Environment,
    format_load,
    format_table,
    read_load_average,
    record_environment,
    run_interleaved,
    write_results,
)
from fxmaps.extract.extractor import FeatureExtractor
from fxmaps.stats.channels import ChannelStats, channel_stats

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

    def setup() -> None:  # what channel_stats does once per call
        FeatureExtractor(fxmaps.analyze(net, data[0][0][None]), "conv")

    runs = run_interleaved({"channel_stats": stats, "plain": plain}, rounds=rounds)
    once = run_interleaved({"setup": setup}, rounds=3, warmup=0)["setup"]
    return {
        "model": "resnet18",
        "layers": "conv (17 nodes)",
        "samples": samples,
        "input": f"3x{size}x{size}",
        "batch_size": batch_size,
        "images_per_s": {k: samples / t.median for k, t in runs.items()},
        "seconds": {k: list(t.seconds) for k, t in runs.items()},
        "relative_throughput": runs["plain"].ratio_to(runs["channel_stats"]),
        "setup_seconds": once.median,
    }


MEMORY_CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from benchmarks.bench_stats import Noise, model
from fxmaps.stats.channels import channel_stats
count = int(sys.argv[1])
start = time.perf_counter()
stats = channel_stats(model(), Noise(count, {size}), layers="conv", batch_size={batch},
                      progress=False)
assert stats.samples == count
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(small: int, factor: int, size: int, batch: int) -> dict[str, Any]:
    """Peak RSS of fresh processes streaming ``small`` samples, then enough samples
    that their maps would need ``factor`` times the first run's peak."""
    code = MEMORY_CHILD.format(root=str(ROOT), threads=torch.get_num_threads(), size=size,
                               batch=batch)  # fmt: skip
    per_sample = map_bytes(model(), size)

    def run(count: int) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", code, str(count)], capture_output=True, text=True, check=True
        )
        seconds, peak_kib = done.stdout.split()[-2:]
        return {
            "samples": count,
            "seconds": float(seconds),
            "peak_rss_mib": int(peak_kib) / 1024,  # ru_maxrss is in KiB on Linux
            "all_maps_would_need_mib": count * per_sample / 2**20,
        }

    first = run(small)
    budget = first["peak_rss_mib"] * 2**20
    second = run(math.ceil(factor * budget / per_sample))
    return {
        "model": "resnet18",
        "layers": "conv (17 nodes)",
        "input": f"3x{size}x{size}",
        "batch_size": batch,
        "map_bytes_per_sample": per_sample,
        "factor": factor,
        "rows": [first, second],
        "peak_growth": second["peak_rss_mib"] / first["peak_rss_mib"],
    }


def map_bytes(net: nn.Module, size: int) -> int:
    """Bytes of all the chosen maps (resnet18's 17 convs) of one sample."""
    maps = fxmaps.extract(net, torch.randn(1, 3, size, size), layers="conv")
    return sum(m.numel() * m.element_size() for m in maps.values())


TORCHRUN_WORKER = """
import sys
sys.path.insert(0, {root!r})
import torch.distributed as dist
from benchmarks.bench_stats import Noise, model
from fxmaps.stats.channels import channel_stats
stats = channel_stats(model(), Noise(int(sys.argv[1]), 64), layers="conv", batch_size=32,
                      progress=False)
if not dist.is_initialized() or dist.get_rank() == 0:
    stats.save(sys.argv[2])
"""


def processes(samples: int) -> dict[str, Any]:
    """The whole ``torchrun`` launch with one and two processes, and whether they agree."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        worker = Path(folder) / "worker.py"
        worker.write_text(textwrap.dedent(TORCHRUN_WORKER.format(root=str(ROOT))))
        saved = []
        for count in (1, 2):
            threads = max(1, torch.get_num_threads() // count)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            out = Path(folder) / f"stats{count}.pt"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            command += ["--nproc_per_node", str(count), str(worker), str(samples), str(out)]
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            saved.append(ChannelStats.load(out))
            rows.append(
                {
                    "processes": count,
                    "threads_each": threads,
                    "seconds": seconds,
                    "images_per_s": samples / seconds,
                }
            )
    one, two = saved
    return {
        "samples": samples,
        "input": "3x64x64",
        "batch_size": 32,
        "rows": rows,
        "same_top_indices": all(torch.equal(one[n].top_indices, two[n].top_indices) for n in one),
        "max_mean_difference": max(float((one[n].mean - two[n].mean).abs().max()) for n in one),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: torch's own)"
    )
    parser.add_argument(
        "--only", choices=PARTS, help="run one part and print it; the results are not written"
    )
    parser.add_argument("--factor", type=int, default=20, help="memory run: maps / budget")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "throughput": lambda: throughput(256 if quick else 2048, 64, 64, 3 if quick else 5),
        "memory": lambda: memory(256, args.factor, 32, 64),
        "processes": lambda: processes(256 if quick else 512),
    }
    command = " ".join(["python", "benchmarks/bench_stats.py", *sys.argv[1:]])
    result: dict[str, Any] = {"environment": record_environment(command=command).to_json()}
    for name, part in parts.items():
        if args.only in (None, name):
            result[name] = part()
    result["environment"]["load_after"] = read_load_average()
    if args.only:
        print(json.dumps(result, indent=2))
        return
    table = _markdown(result)
    write_results(args.out, "bench_stats", table, result)
    print(table)


PARTS = ("throughput", "memory", "processes")


def _markdown(result: dict[str, Any]) -> str:
    env = Environment.from_json(result["environment"])
    lines = [
        "# channel_stats benchmark",
        "",
        f"`{env.extra['command']}`: {env.describe()}; load average "
        f"{format_load(env.extra['load_after'])} at the end.",
        *_throughput_lines(result["throughput"]),
        *_memory_lines(result["memory"]),
        *_processes_lines(result["processes"]),
    ]
    return "\n".join(lines) + "\n"


def _throughput_lines(t: dict[str, Any]) -> list[str]:
    rows = [
        ["plain inference", f"{t['images_per_s']['plain']:.0f}"],
        ["channel_stats", f"{t['images_per_s']['channel_stats']:.0f}"],
    ]
    return [
        "",
        f"## Throughput: {t['model']}, {t['layers']}, {t['samples']} samples of {t['input']}, "
        f"batch {t['batch_size']}",
        "",
        format_table(rows, ["loop", "images/s (median)"], align=["left", "right"]),
        "",
        f"channel_stats runs at **{t['relative_throughput']:.2f}** of the plain loop "
        f"(median of {len(t['seconds']['plain'])} interleaved rounds' ratios; target >= 0.85). "
        f"Its one-time setup per call (analyse the model, build the extractor) takes "
        f"{t['setup_seconds']:.2f} s of that.",
    ]


def _memory_lines(m: dict[str, Any]) -> list[str]:
    rows = [
        [
            str(row["samples"]),
            f"{row['all_maps_would_need_mib']:.0f} MiB",
            f"{row['peak_rss_mib']:.0f} MiB",
            f"{row['seconds']:.0f}",
        ]
        for row in m["rows"]
    ]
    headers = ["samples", "all maps would need", "peak RSS", "seconds"]
    return [
        "",
        f"## Peak memory while streaming: {m['model']}, {m['layers']}, {m['input']}, "
        f"batch {m['batch_size']}",
        "",
        f"All chosen maps of one sample take {m['map_bytes_per_sample'] / 1024:.0f} KiB. The "
        f"first run's peak RSS is the budget; the second streams enough samples that their "
        f"maps would need {m['factor']}x that budget. Each run is a fresh process.",
        "",
        format_table(rows, headers, align=["right"] * 4),
        "",
        f"Peak RSS grew by a factor of **{m['peak_growth']:.3f}**.",
    ]


def _processes_lines(p: dict[str, Any]) -> list[str]:
    rows = [
        [
            str(row["processes"]),
            str(row["threads_each"]),
            f"{row['seconds']:.1f}",
            f"{row['images_per_s']:.0f}",
        ]
        for row in p["rows"]
    ]
    same = "identical" if p["same_top_indices"] else "DIFFERENT"
    return [
        "",
        f"## torchrun, {p['samples']} samples of {p['input']}, batch {p['batch_size']} "
        "(whole launch)",
        "",
        format_table(
            rows, ["processes", "threads each", "seconds", "images/s"], align=["right"] * 4
        ),
        "",
        f"Top-k indices of 1 and 2 processes: {same}; largest difference of a channel mean: "
        f"{p['max_mean_difference']:.1e}.",
    ]


if __name__ == "__main__":
    main()
