"""A model's first-layer filters as colour images, and one deeper layer's filters.

Run: ``python examples/first_layer_filters.py [MODEL] [--weights DEFAULT] [-o DIR]``
(default resnet18; with random weights the filters are noise, with ``DEFAULT`` weights
they show the familiar edge and colour detectors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fxmaps
from fxmaps.errors import one_line
from fxmaps.sources import load_model


def first_layer_filters(
    output: Path, model_name: str = "resnet18", *, weights: str | None = None
) -> list[Path]:
    """Draw the first conv's filters (RGB) and the filters of the third conv; return the files."""
    loaded = load_model(model_name, weights=weights)  # DEFAULT downloads
    graph = fxmaps.analyze(loaded.model)
    convs = graph.layers("conv")
    output.mkdir(parents=True, exist_ok=True)
    first = output / f"{model_name}_{convs[0].name}_filters.png"
    fxmaps.plot_filters(convs[0], notes=[loaded.weights]).savefig(first)
    deeper = output / f"{model_name}_{convs[2].name}_filters.png"
    drawn = fxmaps.plot_filters(convs[2], max_filters=16, mode="channels", notes=[loaded.weights])
    drawn.savefig(deeper)
    return [first, deeper]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="resnet18")
    parser.add_argument("--weights", help="DEFAULT for torchvision's pretrained weights")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/examples/filters"))
    args = parser.parse_args()
    for path in first_layer_filters(args.output, args.model, weights=args.weights):
        print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main()
    except (fxmaps.FxmapsError, OSError) as err:  # one line, as the fxmaps command prints
        print(f"fxmaps: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
