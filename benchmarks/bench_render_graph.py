"""Time ``fxmaps.render_graph`` and Graphviz's ``dot`` on torchvision models, full and collapsed.

For each model (random weights, eval mode, analysed once with a 1x3x224x224 example
input) and each ``collapse`` setting (``"none"``, ``"blocks"``, module depths 1 and 2), it
times building the ``graphviz.Digraph`` (``render_graph``) and laying it out and drawing it
as SVG (``dot.pipe(format="svg")``), interleaved by ``fxmaps.bench.harness.run_interleaved``
(one warm-up round, then ``--repeat`` rounds whose order rotates), medians, all in one
process. It reports the drawn node, edge and cluster counts next to the graph's own node
count (dead ends such as shape asserts are not drawn), prints a markdown table and writes
``results/bench_render_graph.{json,md}``.

    python benchmarks/bench_render_graph.py            # resnet50, resnet152, vit_b_16,
                                                       # efficientnet_b7
    python benchmarks/bench_render_graph.py --quick    # resnet50 only, 3 rounds
"""

from __future__ import annotations

import argparse
import functools
import re
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphviz
import torch
import torchvision

import fxmaps
from fxmaps.bench.harness import (
    Environment,
    Timing,
    format_table,
    record_environment,
    run_interleaved,
    write_results,
)
from fxmaps.render.graph import render_graph

MODELS = ("resnet50", "resnet152", "vit_b_16", "efficientnet_b7")
COLLAPSE: tuple[str | int, ...] = ("none", "blocks", 1, 2)
INPUT_SHAPE = (1, 3, 224, 224)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
_NODE = re.compile(r"^\t*(?!(?:graph|node|edge) \[)(?:\"[^\"]*\"|[\w.]+) \[", re.MULTILINE)
_EDGE = re.compile(r" -> ")
_CLUSTER = re.compile(r"subgraph \"?cluster_")


@dataclass(frozen=True)
class Row:
    """One model drawn with one ``collapse`` setting."""

    model: str
    collapse: str
    graph_nodes: int
    nodes: int
    edges: int
    clusters: int
    build: Timing
    dot_svg: Timing
    svg_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "graph_nodes": self.graph_nodes,
            "drawn_nodes": self.nodes,
            "drawn_edges": self.edges,
            "clusters": self.clusters,
            "svg_bytes": self.svg_bytes,
            "render_graph": self.build.to_json(),
            "dot_svg": self.dot_svg.to_json(),
        }


def bench_model(name: str, repeat: int) -> list[Row]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torchvision.models.get_model(name, weights=None).eval()
    graph = fxmaps.analyze(model, torch.zeros(INPUT_SHAPE))
    rows = []
    for collapse in COLLAPSE:
        dot = render_graph(graph, collapse=collapse)
        source = dot.source
        timings = run_interleaved(
            {
                "render_graph": functools.partial(render_graph, graph, collapse=collapse),
                "dot_svg": functools.partial(dot.pipe, format="svg"),
            },
            rounds=repeat,
        )
        rows.append(
            Row(
                model=name,
                collapse=str(collapse),
                graph_nodes=len(graph),
                nodes=len(_NODE.findall(source)),
                edges=len(_EDGE.findall(source)),
                clusters=len(_CLUSTER.findall(source)),
                build=timings["render_graph"],
                dot_svg=timings["dot_svg"],
                svg_bytes=len(dot.pipe(format="svg")),
            )
        )
    return rows


def environment() -> Environment:
    dot_version = subprocess.run(["dot", "-V"], capture_output=True, text=True, check=False)
    return record_environment(
        "cpu", graphviz_python=graphviz.__version__, graphviz_dot=dot_version.stderr.strip()
    )


def table(rows: Sequence[Row]) -> str:
    body = [
        [
            r.model,
            r.collapse,
            r.graph_nodes,
            r.nodes,
            r.edges,
            r.clusters,
            f"{r.build.median * 1e3:.1f}",
            f"{r.dot_svg.median * 1e3:.0f}",
            f"{r.svg_bytes / 1024:.0f}",
        ]
        for r in rows
    ]
    headers = [
        "model",
        "collapse",
        "graph nodes",
        "drawn nodes",
        "edges",
        "clusters",
        "render_graph ms",
        "dot → SVG ms",
        "SVG KiB",
    ]
    return format_table(body, headers, align=["left", "left", *["right"] * 7])


def markdown(rows: Sequence[Row], env: Environment, repeat: int) -> str:
    setup = (
        f"{env.describe()}; graphviz (Python) {env.extra['graphviz_python']}, "
        f"{env.extra['graphviz_dot']}; median of {repeat} interleaved rounds after one "
        f"warm-up; graphs analysed with a {'x'.join(map(str, INPUT_SHAPE))} input, "
        "random weights."
    )
    return f"# fxmaps.render_graph benchmark\n\n{setup}\n\n{table(rows)}\n"


def save_results(out: Path, rows: Sequence[Row], env: Environment, repeat: int) -> None:
    data = {
        "environment": env.to_json(),
        "config": {"repeat": repeat, "input_shape": list(INPUT_SHAPE)},
        "results": {f"{r.model} collapse={r.collapse}": r.as_dict() for r in rows},
    }
    write_results(out, "bench_render_graph", markdown(rows, env, repeat), data)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--quick", action="store_true", help="resnet50 only, 3 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeat = ["resnet50"], 3
    unknown = sorted(set(args.models) - set(torchvision.models.list_models()))
    if unknown:
        parser.error(f"unknown torchvision models {unknown}; see torchvision.models.list_models()")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[Row] = []
    for name in args.models:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        rows.extend(bench_model(name, args.repeat))
    env = environment()
    print(markdown(rows, env, args.repeat))
    save_results(args.out, rows, env, args.repeat)
    print(f"wrote {args.out / 'bench_render_graph.json'} and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
