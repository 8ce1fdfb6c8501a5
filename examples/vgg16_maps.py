"""VGG16's feature maps of a real photo, 16 for every conv layer, done right.

The tutorial this replaces fed each conv's output straight into the next conv, skipping
the ReLUs and the pooling, so every map after the first was wrong. fxmaps returns what
each conv really produced in the model's own forward pass.

Run: ``python examples/vgg16_maps.py [--weights DEFAULT] [--image PATH] [-o DIR]``
(``DEFAULT`` downloads torchvision's ImageNet weights; without them the maps come from
random weights, which still show edges and colour responses in the first layers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torchvision

import fxmaps
from fxmaps.errors import one_line
from fxmaps.sources import load_model


def vgg16_maps(output: Path, *, weights: str | None = None, image: str | None = None) -> list[Path]:
    """Write one 16-map mosaic per conv layer of VGG16 and an overview; return the files."""
    loaded = load_model("vgg16", weights=weights)  # DEFAULT downloads
    model = loaded.model.eval()
    chosen = torchvision.models.VGG16_Weights.DEFAULT if weights else None
    photo = fxmaps.load_image(image, weights=chosen)
    maps = fxmaps.extract(model, photo, layers="conv")
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name in maps:
        figure = fxmaps.plot_feature_maps(
            maps, name, max_maps=16, order="energy", notes=[loaded.weights]
        )
        figure.savefig(output / f"{name}.png")
        written.append(output / f"{name}.png")
    fxmaps.plot_layers(maps, per_layer=8).savefig(output / "overview.png")
    return [*written, output / "overview.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="DEFAULT for torchvision's pretrained weights")
    parser.add_argument("--image", help="a photo file or URL (default: the bundled cat)")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/examples/vgg16_maps"))
    args = parser.parse_args()
    written = vgg16_maps(args.output, weights=args.weights, image=args.image)
    print(f"wrote {len(written)} figures to {args.output}")


if __name__ == "__main__":
    try:
        main()
    except (fxmaps.FxmapsError, OSError) as err:  # one line, as the fxmaps command prints
        print(f"fxmaps: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
