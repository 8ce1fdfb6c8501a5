"""The digits that excite each channel of the tutorials' SimpleCNN most.

Trains the SimpleCNN of ``digits_simplecnn.py`` on scikit-learn's bundled digits (a
few seconds), takes per-channel statistics of its two conv layers over all 1797
digits in one pass, then draws, for the first- and second-layer channels, the nine
digits that excite each one most with the channel's activation overlaid, and the
spread of channel means and sparsity.

Run: ``python examples/digits_top_images.py [--epochs 8] [-o DIR]``
"""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path
from typing import Any

from torch.utils.data import TensorDataset

from fxmaps.render.stats import plot_channel_stats, plot_top_images
from fxmaps.stats.channels import ChannelStats, channel_stats


def digits_top_images(output: Path, *, epochs: int = 8) -> tuple[ChannelStats, list[Path]]:
    """Train, take the statistics of conv1 and conv2, and draw them; return what was written."""
    simplecnn = _sibling("digits_simplecnn.py")
    model = simplecnn["train"](epochs).model
    images, labels = simplecnn["digits"]()
    dataset = TensorDataset(images, labels)
    stats = channel_stats(model, dataset, layers=["conv1", "conv2"], batch_size=256)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for layer, channels in (("conv1", range(16)), ("conv2", range(8))):
        path = output / f"{layer}_top_digits.png"
        plot_top_images(stats, dataset, layer, channels=list(channels)).savefig(path)
        written.append(path)
    histograms = output / "channel_stats.png"
    plot_channel_stats(stats).savefig(histograms)
    written.append(histograms)
    written.append(stats.save(output / "digits_stats.pt"))
    return stats, written


def _sibling(name: str) -> dict[str, Any]:
    """The namespace of another example in this folder (the SimpleCNN and its training)."""
    return runpy.run_path(str(Path(__file__).with_name(name)), run_name=name.removesuffix(".py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/examples/digits_top"))
    args = parser.parse_args()
    stats, written = digits_top_images(args.output, epochs=args.epochs)
    print(stats)
    for name, dead in stats.dead().items():
        print(f"{name}: dead channels {dead}")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
