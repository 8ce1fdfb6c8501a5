"""The ``fxmaps`` command line: argument parsing only, on top of the public API.

Errors print as one line on stderr with exit code 2 (``--debug`` shows the
traceback instead).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from fxmaps.analyze import analyze
from fxmaps.bench import benchmark_extraction
from fxmaps.errors import DeviceError, FxmapsError
from fxmaps.zoo import load_model

__all__ = ["main"]

_EPILOG = """\
MODEL is a torchvision model name (resnet18, vit_b_16, ...), timm:NAME when timm is
installed, path/to/file.py:Name or package.module:Name (an nn.Module class or a
factory taking no arguments).

examples:
  fxmaps summary resnet18
  fxmaps summary vit_b_16 --kinds linear attention
  fxmaps summary my_model.py:Net --input-size 1 28 28 --weights net.pt
  fxmaps bench resnet50 --layers conv --batch 8 --json bench.json
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.run(args))
    except FxmapsError as err:
        if args.debug:
            raise
        print(f"fxmaps: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxmaps: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxmaps",
        description="See what a neural network sees.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    summary = commands.add_parser(
        "summary",
        help="trace a model and print its classified layers as a table",
        description="Trace MODEL with torch.fx, classify every node and print a table: "
        "name, kind, type, output shape, parameters and block, with the layer census.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_arguments(summary)
    summary.add_argument(
        "--kinds", nargs="+", metavar="KIND", help="show only these kinds (conv, linear, ...)"
    )
    summary.set_defaults(run=_summary)
    bench = commands.add_parser(
        "bench",
        help="time extraction against a plain forward and forward hooks",
        description="Run MODEL's plain forward pass, fxmaps extraction of --layers and the "
        "forward-hook approach, interleaved after warm-up, and print medians, min-max, ratios "
        "to the plain forward and peak memory.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_arguments(bench, batch=8)
    bench.add_argument(
        "--layers", nargs="+", default=["conv"], metavar="LAYER",
        help="kinds, node names or glob patterns to extract (default: conv)",
    )  # fmt: skip
    bench.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
    bench.add_argument("--device", default="cpu", help="where to run: cpu, cuda, cuda:1, ...")
    bench.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(run=_bench)
    return parser


def _model_arguments(parser: argparse.ArgumentParser, *, batch: int = 1) -> None:
    parser.add_argument("model", metavar="MODEL", help="the model to load (see below)")
    parser.add_argument(
        "--input-size",
        nargs="+",
        type=int,
        metavar="N",
        help="per-sample input shape, for example 3 224 224 (default: what the model expects)",
    )
    parser.add_argument(
        "--batch", type=int, default=batch, help=f"batch size of the input (default {batch})"
    )
    if parser.prog.endswith("summary"):
        parser.add_argument(
            "--no-input", action="store_true", help="trace without an example input (no shapes)"
        )
    parser.add_argument(
        "--weights", metavar="PATH", help="a local state-dict file, or DEFAULT (downloads)"
    )
    parser.add_argument("--train", action="store_true", help="analyse the training-mode graph")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _summary(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    example = None
    if not args.no_input:
        size = tuple(args.input_size) if args.input_size else loaded.input_size
        example = torch.randn(args.batch, *size)
    graph = analyze(loaded.model, example, train=args.train)
    print(graph.summary(args.kinds))
    return 0


def _bench(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, weights=args.weights)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {args.device}: no CUDA device here; use --device cpu")
    size = tuple(args.input_size) if args.input_size else loaded.input_size
    model = loaded.model.to(device)
    inputs = torch.randn(args.batch, *size, device=device)
    result = benchmark_extraction(
        model, inputs, layers=args.layers, repeat=args.repeat, name=args.model
    )
    print(result.table())
    if args.json:
        result.save_json(args.json)
        print(f"wrote {args.json}")
    return 0


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"fxmaps: warning: {message}\n"
