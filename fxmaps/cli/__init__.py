"""The ``fxmaps`` command line: argument parsing only; the commands call the public API.

Errors print as one line on stderr with exit code 2 (``--debug`` shows the
traceback instead). An unexpected error, a bug rather than a wrong input, prints
as one line too, with exit code 1 and a request to report it. SIGINT (Ctrl-C) and
SIGTERM print one line and exit with 130 and 143, leaving no temporary files
(``signals.py``). ``fxmaps bench --baseline`` exits with code 3 when it finds a
regression. Importing this package is light: the commands, and torch with them, are
imported when :func:`main` runs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fxmaps.cli.signals import Terminated, exit_code, message, swallowed, unwinding
from fxmaps.errors import FxmapsError
from fxmaps.errors import one_line as _one_line

if TYPE_CHECKING:
    from collections.abc import Callable

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
        "fxmaps graph resnet50 -o resnet50.svg --collapse repeats",
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
    "bench": [
        "fxmaps bench resnet50 --layers conv --batch 8 --json bench.json",
        "fxmaps bench resnet18 --batch 2 --input-size 3 112 112 --threads 1 "
        "--baseline old.json --tolerance 25% --markdown summary.md",
    ],
    "stats": [
        "fxmaps stats my_cnn.py:SimpleCNN --input-size 1 28 28 --data digits -o stats/",
        "fxmaps stats resnet18 --data photos/ --layers 'layer4.*' -o stats/",
        "torchrun --nproc_per_node 2 -m fxmaps stats resnet18 --data digits -o stats/",
    ],
    "cam": [
        "fxmaps cam resnet18 -o cam.png",
        "fxmaps cam resnet50 --weights DEFAULT --image cat.jpg --method gradcam layercam -o c.png",
        "fxmaps cam vit_b_16 --target 281 --layer encoder.layers.encoder_layer_10 -o cam.png",
        "fxmaps cam my_audio.py:Net --input-size 1 16000 --seed 0 -o cam.png  # a 1-d model",
    ],
    "demo": ["fxmaps demo", "fxmaps demo -o /tmp/fxmaps-demo"],
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Errors (fxmaps's own, and the system's: a full disk, a denied permission)
    print as one line on stderr and return 2; any other exception prints as one
    line and returns 1. ``--debug`` raises them instead. SIGINT and SIGTERM
    unwind the command (its cleanup runs), print one line and return 130 or 143.
    """
    with unwinding():
        try:
            code = _run(_parser().parse_args(argv))
            stopped = swallowed()  # a signal whose exception Python swallowed
            if stopped is None:
                return code
            code, line = exit_code(stopped), message(stopped)
        except (KeyboardInterrupt, Terminated) as err:
            code, line = exit_code(err), message(err)
        # out of the except clause, the interrupted frames are gone: their progress bars
        # have cleared their lines, and the message is the command's last line
        print(line, file=sys.stderr)
        return code


def _run(args: argparse.Namespace) -> int:
    format_warning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        if getattr(args, "seed", None) is not None:
            from fxmaps.cli.commands import seed

            seed(args.seed)
        return int(args.run(args))
    except (FxmapsError, OSError) as err:
        if args.debug:
            raise
        print(f"fxmaps: error: {_one_line(err)}", file=sys.stderr)
        return 2
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
    from fxmaps import __version__
    from fxmaps.cli import commands  # torch and the rest: imported once main runs

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
    from fxmaps.extract.memory import byte_count

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


def _tolerance(text: str) -> float:
    from fxmaps.bench.gate import parse_tolerance

    try:
        return parse_tolerance(text)
    except FxmapsError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


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
    parser.add_argument(
        "--seed", type=int, metavar="N",
        help="seed the random number generators first, so that random weights and random "
        "inputs are the same from run to run",
    )  # fmt: skip
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
                        help="none, blocks, repeats (runs of identical blocks as one xN), "
                        "or a module depth like 1 (default none)")  # fmt: skip
    parser.add_argument("--no-shapes", action="store_true", help="leave output shapes out")
    parser.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"])
    parser.add_argument("--train", action="store_true", help="draw the training-mode graph")


def _image_arguments(
    parser: argparse.ArgumentParser, layers: tuple[list[str] | None, str] = (["conv"], "conv")
) -> None:
    """--image and --layers; ``layers`` is the default of --layers and how help names it."""
    parser.add_argument("--image", metavar="PATH|URL",
                        help="the image to look at (default: the bundled photo)")  # fmt: skip
    parser.add_argument("--layers", nargs="+", default=layers[0], metavar="LAYER",
                        help=f"kinds, names, patterns, module:PATH "
                        f"(default: {layers[1]})")  # fmt: skip


def _maps(parser: argparse.ArgumentParser) -> None:
    _image_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="the folder for the PNGs (created if missing)")  # fmt: skip
    parser.add_argument("--max-maps", type=_positive, default=64, metavar="N",
                        help="tiles per layer (default 64)")  # fmt: skip
    parser.add_argument("--order", default="energy", choices=["energy", "index"],
                        help="most active channels first, or channel order "
                        "(default energy)")  # fmt: skip
    parser.add_argument("--channels", nargs="+", metavar="C",
                        help="keep these channels of each map: indices (0 5 7), a slice "
                        "(0:16) or top:K, the K most active")  # fmt: skip
    parser.add_argument("--reduce", metavar="HOW",
                        help="reduce each map: mean, max or norm over channels, or "
                        "mean:space, max:space, norm:space over positions")  # fmt: skip
    parser.add_argument("--dtype", metavar="DTYPE",
                        help="keep maps in this dtype, for example float16")  # fmt: skip
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
    from fxmaps.attribute.methods import METHODS

    parser.add_argument("--image", metavar="PATH|URL",
                        help="the image to look at (default: the bundled photo; with "
                        "--input-size C L, a model of signals, a random signal)")  # fmt: skip
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
    _image_arguments(parser, (None, "every conv, and a transformer's block outputs"))
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the .html file to write")  # fmt: skip
    parser.add_argument("--max-maps", type=_positive, default=16, metavar="N",
                        help="tiles per layer (default 16)")  # fmt: skip
    _max_bytes(parser)


def _bench(parser: argparse.ArgumentParser) -> None:
    from fxmaps.bench.gate import REGRESSION_EXIT_CODE, parse_tolerance

    parser.add_argument("--batch", type=_positive, default=8, help="batch size (default 8)")
    parser.add_argument("--layers", nargs="+", default=["conv"], metavar="LAYER",
                        help="kinds, names, patterns, module:PATH (default: conv)")  # fmt: skip
    parser.add_argument("--repeat", type=_positive, default=7, help="timed rounds (default 7)")
    parser.add_argument("--device", default="cpu", help="where to run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=_positive, metavar="N",
                        help="torch's intra-op threads (default: torch's choice)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the record as JSON (schema: docs/bench.md)")  # fmt: skip
    parser.add_argument("--markdown", type=Path, metavar="PATH",
                        help="also write the table (and the gate's line) as markdown")  # fmt: skip
    parser.add_argument("--baseline", type=Path, metavar="PATH",
                        help="a record of an earlier run of the same model, input and layers: "
                        f"exit with code {REGRESSION_EXIT_CODE} when fxmaps / forward is more "
                        "than --tolerance above its ratio")  # fmt: skip
    parser.add_argument("--tolerance", type=_tolerance, default=parse_tolerance("10%"),
                        metavar="PCT", help="how far above the baseline's ratio still passes, "
                        "as 10%% or 0.1 (default 10%%)")  # fmt: skip
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
