"""Where a small CNN looks for each digit: the tutorials' SimpleCNN, trained in seconds on
scikit-learn's bundled digits, explained with ``fxmaps.cam``.

One test digit of each class, the map of its true class over it, first with Grad-CAM at
the node fxmaps chooses (the last grid before the classifier), then with LayerCAM at
the second convolution's ReLU, whose 8x8 grid is finer. No download: the digits ship
with scikit-learn and the weights are learned here.

Run: ``python examples/cam_digits.py [--epochs 8] [-o DIR]``
"""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path
from typing import Any

import torch

import fxmaps


def _simplecnn() -> dict[str, Any]:
    """The SimpleCNN example's namespace (its network, data and training)."""
    path = Path(__file__).with_name("digits_simplecnn.py")
    return runpy.run_path(str(path), run_name="digits_simplecnn")


def one_per_digit(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """The first test image of each digit 0-9."""
    picked = [int((labels == digit).nonzero()[0]) for digit in range(10)]
    return images[picked], [int(labels[i]) for i in picked]


def cam_digits(output: Path, *, epochs: int = 8) -> tuple[float, list[fxmaps.CamResult], Path]:
    """Train, explain one digit of each class with two methods, draw both."""
    trained = _simplecnn()["train"](epochs)
    images, digits = one_per_digit(trained.images, trained.labels)
    graph = fxmaps.analyze(trained.model, images)
    results = [
        fxmaps.cam(graph, images, digits, method="gradcam"),
        fxmaps.cam(graph, images, digits, method="layercam", layer="relu_1"),
    ]
    output.mkdir(parents=True, exist_ok=True)
    path = output / "simplecnn_cam_digits.png"
    labels = [f"digit {d}" for d in range(10)]
    rows = [fxmaps.plot_cam(r, images, labels=labels, ncols=5) for r in results]
    _side_by_side(rows, path)
    return trained.accuracy, results, path


def _side_by_side(figures: list[Any], path: Path) -> None:
    """The figures one above the other, in one PNG."""
    import matplotlib.image as mpimg
    import numpy as np

    pictures = []
    for figure in figures:
        figure.canvas.draw()
        pictures.append(np.asarray(figure.canvas.buffer_rgba()))
    width = max(p.shape[1] for p in pictures)
    padded = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)
              for p in pictures]  # fmt: skip
    mpimg.imsave(path, np.concatenate(padded, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/examples/cam_digits"))
    args = parser.parse_args()
    accuracy, results, path = cam_digits(args.output, epochs=args.epochs)
    for result in results:
        print(f"{result.method} at {result.layer}: targets {list(result.targets)}")
    print(f"test accuracy {accuracy:.1%}; wrote {path}")


if __name__ == "__main__":
    main()
