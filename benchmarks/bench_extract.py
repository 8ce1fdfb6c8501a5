"""Extraction speed and memory: fxmaps against a plain forward pass and forward hooks.

For each case (model, batch, selection) ``fxmaps.benchmark_extraction`` runs the
model's plain forward pass, fxmaps's extractor and the forward-hook approach in
one process, interleaved with a rotating order after warm-up, and reports the
ratio of medians to the plain forward. Targets: at most 1.05 for all convs of
resnet50 (all linears of vit_b_16) at batch 8, and at most 1.25 when every node
is returned. A second table shows the memory controls (channels, reduce, dtype,
device) on resnet50's convs: time ratio, maps kept and peak memory.

    python benchmarks/bench_extract.py                # the full run (make bench)
    python benchmarks/bench_extract.py --quick        # resnet18 at batch 2, what CI runs
    python benchmarks/bench_extract.py --threads 1    # steadier on a busy machine
    python benchmarks/bench_extract.py --threads 1 --case 'resnet50:*'   # one case
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision

import fxmaps
from fxmaps.bench.extraction import FORWARD, FXMAPS, HOOKS
from fxmaps.bench.harness import format_mib, format_table, write_results

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Case:
    model: str
    batch: int
    size: int
    layers: str
    target: float


FULL = [
    Case("resnet50", 8, 224, "conv", 1.05),
    Case("resnet50", 8, 224, "*", 1.25),
    Case("vit_b_16", 8, 224, "linear", 1.05),
    Case("vit_b_16", 8, 224, "*", 1.25),
]
QUICK = [Case("resnet18", 2, 112, "conv", 1.05), Case("resnet18", 2, 112, "*", 1.25)]
CONTROLS: list[tuple[str, dict[str, Any]]] = [
    ("none", {}),
    ("channels='top:8'", {"channels": "top:8"}),
    ("reduce='mean'", {"reduce": "mean"}),
    ("dtype=float16", {"dtype": torch.float16}),
    ("device='cpu'", {"device": "cpu"}),
]


def main() -> None:
    args = _arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = QUICK if args.quick else FULL
    if args.case:
        cases = [case for case in FULL if f"{case.model}:{case.layers}" in args.case]
    repeat = args.repeat or (3 if args.quick else 11)
    speed = [_speed(case, repeat) for case in cases]
    controls = [] if args.case else _controls(cases[0], max(3, repeat // 2))
    stem = "bench_extract_quick" if args.quick else "bench_extract"
    stem = f"{stem}_cases" if args.case else stem
    report = _markdown(speed, controls, cases[0], repeat)
    print(report)
    data = {
        "speed": [result.to_json() for _, result in speed],
        "controls": {label: result.to_json() for label, result in controls},
    }
    write_results(args.out, stem, report, data)
    print(f"wrote {args.out / stem}.md and .json")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="resnet18 at batch 2, 3 rounds")
    parser.add_argument("--repeat", type=int, help="timed rounds (default 11, quick 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--case", action="append", metavar="MODEL:LAYERS",
                        choices=[f"{c.model}:{c.layers}" for c in FULL],
                        help="only this case of the full run, no controls (repeatable), "
                        "written to results/bench_extract_cases.*")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md and .json")
    return parser.parse_args()


def _model(case: Case) -> tuple[torch.nn.Module, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(case.model, weights=None).eval()
    return model, torch.randn(case.batch, 3, case.size, case.size)


def _speed(case: Case, repeat: int) -> tuple[Case, fxmaps.ExtractionBenchmark]:
    model, x = _model(case)
    result = fxmaps.benchmark_extraction(
        model, x, layers=case.layers, repeat=repeat, name=case.model
    )
    return case, result


def _controls(case: Case, repeat: int) -> list[tuple[str, fxmaps.ExtractionBenchmark]]:
    model, x = _model(case)
    graph = fxmaps.analyze(model)
    return [
        (label, fxmaps.benchmark_extraction(graph, x, layers="conv", repeat=repeat, **options))
        for label, options in CONTROLS
    ]


def _markdown(
    speed: list[tuple[Case, fxmaps.ExtractionBenchmark]],
    controls: list[tuple[str, fxmaps.ExtractionBenchmark]],
    first: Case,
    repeat: int,
) -> str:
    environment = speed[0][1].environment
    headers = ["model", "batch", "layers", "maps", "fxmaps / forward", "target", "hooks / forward",
               "forward peak", "fxmaps peak", "hooks peak", "fxmaps keeps"]  # fmt: skip
    control_rows = [
        [
            label,
            f"{r.ratio(FXMAPS):.3f}x",
            format_mib(r.retained_bytes),
            format_mib(r.timings[FXMAPS].peak_bytes),
        ]
        for label, r in controls
    ]
    return "\n".join(
        [
            "# Extraction benchmark",
            "",
            f"{environment.describe() if environment else ''}; "
            f"{repeat} interleaved rounds after warm-up; ratios are the median over rounds of "
            "each run's time over the plain forward's in the same round; random weights, "
            "eval mode.",
            "",
            format_table(
                [_speed_row(case, result) for case, result in speed],
                headers,
                align=["left", "right", "left", "right", *["right"] * 7],
            ),
            "",
            *_controls_section(control_rows, first),
        ]
    )


def _controls_section(rows: list[list[str]], first: Case) -> list[str]:
    if not rows:
        return []
    return [
        f"## Memory controls: {first.model}, batch {first.batch}, all convs",
        "",
        format_table(
            rows,
            ["control", "fxmaps / forward", "maps kept", "peak memory"],
            align=["left", "right", "right", "right"],
        ),
        "",
    ]


def _speed_row(case: Case, result: fxmaps.ExtractionBenchmark) -> list[Any]:
    ratio = result.ratio(FXMAPS)
    return [
        case.model,
        case.batch,
        case.layers,
        result.layers,
        f"{ratio:.3f}x {'ok' if ratio <= case.target else 'over'}",
        f"<= {case.target}",
        f"{result.ratio(HOOKS):.3f}x",
        *(format_mib(result.timings[name].peak_bytes) for name in (FORWARD, FXMAPS, HOOKS)),
        format_mib(result.retained_bytes),
    ]


if __name__ == "__main__":
    main()
