"""The ``fxmaps`` command line: argument parsing only; the commands call the public API.

Errors print as one line on stderr with exit code 2 (``--debug`` shows the
traceback instead). An unexpected error, a bug rather than a wrong input, prints
as one line too, with exit code 1 and a request to report it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from fxmaps import __version__
from fxmaps.cam.methods import METHODS
from fxmaps.cli import commands
from fxmaps.errors import FxmapsError
from fxmaps.errors import one_line as _one_line
from fxmaps.extract.memory import byte_count

__all__ = ["main"]

_MODELS = """\
MODEL is a torchvision model name (resnet18, vit_b_16, ...), timm:NAME when timm is
installed, path/to/file.py:Name or package.module:Name (an nn.Module class or a
factory taking no arguments)."""

_EXAMPLES = {
    "summary": [
        "fxmaps summary resnet18",
        "fxmaps summary vit_b_16 --kinds linear attention",
        "fxmaps summary my_model.py:Net --input-size 1 28 28 --weights net.pt",
    ],
    "graph": [
        "fxmaps graph resnet50 -o resnet50.svg --collapse blocks",
        "fxmaps graph vit_b_16 -o vit.png --collapse 3 --rankdir LR",
    ],
    "maps": [
        "fxmaps maps resnet18 -o maps/",
        "fxmaps maps vgg16 --image cat.jpg --layers conv -o maps/",
        "fxmaps maps resnet50 --image https://example.org/dog.jpg --layers 'layer4.*' -o maps/",
    ],
    "filters": [
        "fxmaps filters resnet18 -o filters.png",
        "fxmaps filters vgg16 --layer features.2 -o filters.png",
    ],
    "report": [
        "fxmaps report resnet18 -o report.html",
        "fxmaps report efficientnet_b0 --image cat.jpg --layers conv -o report.html",
    ],
    "bench": ["fxmaps bench resnet50 --layers conv --batch 8 --json bench.json"],
    "stats": [
        "fxmaps stats my_cnn.py:SimpleCNN --input-size 1 28 28 --data digits -o stats/",
        "fxmaps stats resnet18 --data photos/ --layers 'layer4.*' -o stats/",
        "torchrun --nproc_per_node 2 -m fxmaps stats resnet18 --data digits -o stats/",
    ],
    "cam": [
        "fxmaps cam resnet18 -o cam.png",
        "fxmaps cam resnet50 --weights DEFAULT --image cat.jpg --method gradcam layercam -o c.png",
        "fxmaps cam vit_b_16 --target 281 --layer encoder.layers.encoder_layer_10 -o cam.png",
    ],
    "demo": ["fxmaps demo", "fxmaps demo -o /tmp/fxmaps-demo"],
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Errors (fxmaps's own, and the system's: a full disk, a denied permission)
    print as one line on stderr and return 2; any other exception prints as one
    line and returns 1. ``--debug`` raises them instead.
    """
    args = _parser().parse_args(argv)
    format_warning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.run(args))
    except (FxmapsError, OSError) as err:
        if args.debug:
            raise
        print(f"fxmaps: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxmaps: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(
            f"fxmaps: error: {type(err).__name__}: {_one_line(err)} (unexpected: run again "
            "with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.formatwarning = format_warning


def _parser() -> argparse.ArgumentParser:
    every = "\n".join(f"  {line}" for lines in _EXAMPLES.values() for line in lines[:1])
    parser = argparse.ArgumentParser(
        prog="fxmaps",
        description="See what a neural network sees.",
        epilog=f"{_MODELS}\n\nexamples:\n{every}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fxmaps {__version__}")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _summary(_command(sub, "summary", "print the classified layers as a table", commands.summary))
    _graph(_command(sub, "graph", "draw the annotated graph (svg, png, pdf, dot)", commands.graph))
    _maps(
        _command(sub, "maps", "draw the feature maps of an image, one PNG a layer", commands.maps)
    )
    _filters(_command(sub, "filters", "draw a conv layer's filters", commands.filters))
    _report(_command(sub, "report", "write one self-contained HTML report", commands.report))
    _bench(_command(sub, "bench", "time extraction against a forward and hooks", commands.bench))
    _stats(_command(sub, "stats", "channel statistics and top images of a dataset", commands.stats))
    _cam(_command(sub, "cam", "draw where the model looks for a class", commands.cam))
    demo = sub.add_parser("demo", help="graph, maps, filters and report of resnet18 on a photo",
                          description="Run the main job on the built-in default: resnet18 "
                          "(random weights)\nlooking at the bundled photo; write the graph, the "
                          "maps, the filters and\nthe report into one folder.",
                          epilog=_epilog("demo", models=False),
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    demo.add_argument("-o", "--output", type=Path, default=Path("out/demo"), metavar="DIR",
                      help="the folder, created if missing (default: out/demo)")  # fmt: skip
    demo.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    demo.set_defaults(run=commands.demo)
    return parser


def _epilog(name: str, *, models: bool = True) -> str:
    lines = "\n".join(f"  {line}" for line in _EXAMPLES[name])
    return f"{_MODELS}\n\nexamples:\n{lines}" if models else f"examples:\n{lines}"


def _byte_count(text: str) -> float:
    """``2G``, ``512M``, ``1.5G``, ``1000000`` (bytes; K, M, G, T are powers of 1024), ``inf``:
    the parser ``max_bytes=`` uses in the API too."""
    size = byte_count(text)
    if size is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; use bytes or a size like 512M or 2G, or inf for no limit"
        )
    return size


def _max_bytes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-bytes", type=_byte_count, metavar="SIZE",
        help="refuse when the maps would take more memory than this: bytes, or 512M, 2G "
        "(powers of 1024); inf for no limit (default: half the free memory)",
    )  # fmt: skip


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=_epilog(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="the model to load (see below)")
    parser.add_argument(
        "--input-size", nargs="+", type=_positive, metavar="N",
        help="per-sample input shape, for example 3 224 224 (default: what the model expects)",
    )  # fmt: skip
    parser.add_argument(
        "--weights", metavar="PATH", help="a state-dict file, or DEFAULT (downloads)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.set_defaults(run=run)
    return parser


def _summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch", type=_positive, default=1, help="batch size of the example input"
    )
    parser.add_argument(
        "--no-input", action="store_true", help="trace without an input (no shapes)"
    )
    parser.add_argument("--train", action="store_true", help="analyse the training-mode graph")
    parser.add_argument("--kinds", nargs="+", metavar="KIND", help="show only these kinds")


def _graph(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the file to write: .svg, .png, .pdf or .dot")  # fmt: skip
    parser.add_argument("--collapse", default="none", metavar="HOW",
                        help="none, blocks, or a module depth like 1 (default none)")  # fmt: skip
    parser.add_argument("--no-shapes", action="store_true", help="leave output shapes out")
    parser.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"])
    parser.add_argument("--train", action="store_true", help="draw the training-mode graph")


def _image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", metavar="PATH|URL",
                        help="the image to look at (default: the bundled photo)")  # fmt: skip
    parser.add_argument("--layers", nargs="+", default=["conv"], metavar="LAYER",
                        help="kinds, names, patterns, module:PATH (default: conv)")  # fmt: skip


def _maps(parser: argparse.ArgumentParser) -> None:
    _image_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="the folder for the PNGs (created if missing)")  # fmt: skip
    parser.add_argument("--max-maps", type=_positive, default=64, metavar="N",
                        help="tiles per layer (default 64)")  # fmt: skip
    parser.add_argument("--order", default="energy", choices=["energy", "index"],
                        help="most active channels first, or channel order "
                        "(default energy)")  # fmt: skip
    _max_bytes(parser)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the image to write (.png, .svg or .pdf)")  # fmt: skip
    parser.add_argument("--layer", metavar="NAME",
                        help="the conv node (default: the first conv)")  # fmt: skip
    parser.add_argument("--max-filters", type=_positive, default=64, metavar="N",
                        help="filters to draw at most (default 64)")  # fmt: skip
    parser.add_argument("--mode", default="auto", choices=["auto", "rgb", "channels", "mean"],
                        help="input channels as colour, one by one, or averaged "
                        "(default auto: by the kernels' form)")  # fmt: skip


def _cam(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", metavar="PATH|URL",
                        help="the image to look at (default: the bundled photo)")  # fmt: skip
    parser.add_argument("--target", type=int, metavar="CLASS",
                        help="the class to explain (default: the top class)")  # fmt: skip
    parser.add_argument("--method", nargs="+", default=["gradcam"], metavar="METHOD",
                        help=f"one or more of {', '.join(METHODS)}, drawn side by side "
                        "(default gradcam)")  # fmt: skip
    parser.add_argument("--layer", metavar="NAME",
                        help="the node (default: chosen from the graph, see the docs)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the image to write (.png, .svg or .pdf)")  # fmt: skip


def _report(parser: argparse.ArgumentParser) -> None:
    _image_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the .html file to write")  # fmt: skip
    parser.add_argument("--max-maps", type=_positive, default=16, metavar="N",
                        help="tiles per layer (default 16)")  # fmt: skip
    _max_bytes(parser)


def _bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=_positive, default=8, help="batch size (default 8)")
    parser.add_argument("--layers", nargs="+", default=["conv"], metavar="LAYER",
                        help="kinds, names, patterns, module:PATH (default: conv)")  # fmt: skip
    parser.add_argument("--repeat", type=_positive, default=7, help="timed rounds (default 7)")
    parser.add_argument("--device", default="cpu", help="where to run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    _max_bytes(parser)


def _stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="digits|DIR",
                        help="scikit-learn's bundled digits, or a folder of images "
                        "(flat, or one subfolder per class)")  # fmt: skip
    parser.add_argument("--layers", nargs="+", default=["conv"], metavar="LAYER",
                        help="kinds, names, patterns, module:PATH (default: conv)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="where stats.pt and the figures go (created if missing)")  # fmt: skip
    parser.add_argument("--batch-size", type=_positive, default=64, metavar="N",
                        help="samples per forward pass, per process (default 64)")  # fmt: skip
    parser.add_argument("--topk", type=_positive, default=9, metavar="K",
                        help="top samples kept per channel (default 9)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="DataLoader worker processes (default 0)")  # fmt: skip
    parser.add_argument("--train", action="store_true",
                        help="statistics of the training-mode graph (default: eval mode); "
                        "BatchNorm then normalises each batch by its own statistics, so "
                        "they depend on the batch size and on how torchrun splits the "
                        "data")  # fmt: skip


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"fxmaps: warning: {message}\n"
