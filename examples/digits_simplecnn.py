"""The tutorials' SimpleCNN, trained in seconds on scikit-learn's bundled digits, then its
learned filters and what its first conv layer sees.

The 8x8 digits are upsampled to 28x28 so the network is exactly the tutorial's
(conv 5x5 -> ReLU -> pool -> conv 5x5 -> ReLU -> pool -> three linears). No download:
the digits ship with scikit-learn.

Run: ``python examples/digits_simplecnn.py [--epochs 8] [-o DIR]``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import fxmaps


class SimpleCNN(nn.Module):
    """The tutorials' network for 28x28 single-channel digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=5)
        self.fc1 = nn.Linear(32 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@dataclass(frozen=True)
class Trained:
    model: SimpleCNN
    accuracy: float
    images: torch.Tensor
    labels: torch.Tensor


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits as (N, 1, 28, 28) floats in [0, 1], and their labels."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return images, torch.tensor(data.target)


def train(epochs: int = 8, seed: int = 0) -> Trained:
    """Train on 80% of the digits; report accuracy on the other 20%."""
    torch.manual_seed(seed)
    images, labels = digits()
    order = torch.randperm(len(images))
    split = int(0.8 * len(images))
    train_idx, test_idx = order[:split], order[split:]
    model = SimpleCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for batch in train_idx.split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(images[test_idx]).argmax(1)
    accuracy = (predicted == labels[test_idx]).float().mean().item()
    return Trained(model, accuracy, images[test_idx], labels[test_idx])


def digits_simplecnn(output: Path, *, epochs: int = 8) -> tuple[float, list[Path]]:
    """Train, then draw conv1's learned filters and its maps of one test digit."""
    trained = train(epochs)
    output.mkdir(parents=True, exist_ok=True)
    filters = output / "simplecnn_conv1_filters.png"
    fxmaps.plot_filters(trained.model.conv1, cmap="gray").savefig(filters)
    maps = fxmaps.extract(trained.model, trained.images[:1], layers=["conv1", "conv2"])
    first = output / "simplecnn_conv1_maps.png"
    title = f"conv1 of a {int(trained.labels[0])}"
    fxmaps.plot_feature_maps(maps, "conv1", cmap="gray", title=title).savefig(first)
    second = output / "simplecnn_conv2_maps.png"
    fxmaps.plot_feature_maps(maps, "conv2", cmap="gray").savefig(second)
    return trained.accuracy, [filters, first, second]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/examples/digits"))
    args = parser.parse_args()
    accuracy, written = digits_simplecnn(args.output, epochs=args.epochs)
    print(f"test accuracy {accuracy:.1%}; wrote {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()
