"""Multiply-accumulates of torchvision models: fxmaps against torchinfo and FlopCounterMode.

For each model (random weights, eval mode, one 1x3x224x224 image, CPU), three counts:

* ``fxmaps.analyze(model, x).macs()``;
* torchinfo's "Total mult-adds" (``torchinfo.summary(model, input_data=x).total_mult_adds``);
* ``torch.utils.flop_counter.FlopCounterMode``'s total FLOPs over 2, on an eval-mode
  forward under ``torch.no_grad`` (the way a model is used for inference).

and, where one is known, the analytic count of the model's matrix products (vit_b_16). It
prints a markdown table (the one in the README) and, with ``--out``, writes it there.

Run from the repository root (torchinfo is in the ``compare`` extra)::

    python scripts/compare_macs.py
    python scripts/compare_macs.py --models resnet18 vit_b_16 --out /tmp/macs.md
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torchvision
from tabulate import tabulate
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fxmaps

MODELS = ["resnet18", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t"]


def vit_b_16_analytic() -> int:
    """12 blocks of (4TD² + 2T²D + 8TD²), the patch embedding and the head; T=197, D=768."""
    tokens, width = 197, 768
    blocks = 12 * (4 * tokens * width**2 + 2 * tokens**2 * width + 8 * tokens * width**2)
    return blocks + 196 * width * 3 * 16 * 16 + width * 1000


ANALYTIC = {"vit_b_16": vit_b_16_analytic}


def torchinfo_macs(model: nn.Module, image: torch.Tensor) -> int:
    import torchinfo

    found = torchinfo.summary(model, input_data=image, verbose=0, mode="eval")
    return int(found.total_mult_adds)


def flop_counter_macs(model: nn.Module, image: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return float(counter.get_total_flops()) / 2


def giga(value: float | None) -> str:
    return "" if value is None else f"{value / 1e9:.2f} G"


def row(name: str) -> list[str]:
    model = torchvision.models.get_model(name, weights=None).eval()
    image = torch.randn(1, 3, 224, 224)
    analytic = ANALYTIC.get(name)
    return [
        name,
        giga(fxmaps.analyze(model, image).macs()),
        giga(torchinfo_macs(model, image)),
        giga(flop_counter_macs(model, image)),
        giga(analytic()) if analytic else "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    headers = ["model", "fxmaps", "torchinfo", "FlopCounterMode / 2", "analytic"]
    table = tabulate(
        [row(name) for name in args.models],
        headers=headers,
        tablefmt="github",
        disable_numparse=True,
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
