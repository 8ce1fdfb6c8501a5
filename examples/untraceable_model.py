"""A model torch.fx cannot trace as a whole: fxmaps makes the failing part opaque and says so.

``Router`` decides at run time which branch to take from the data itself, which symbolic
tracing cannot record. fxmaps traces everything else, keeps ``Router`` as one opaque node,
warns about it, and still finds the residual block around it.
Run: ``python examples/untraceable_model.py``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import fxmaps


class Router(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bright = nn.Conv2d(channels, channels, 3, padding=1)
        self.dark = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:  # data-dependent control flow
            return self.bright(x)
        return self.dark(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.router = Router(16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.router(x)
        return self.head(x)


def main() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fxmaps.FxmapsWarning)
        graph = fxmaps.analyze(Net(), torch.randn(1, 3, 32, 32))
    for warning in caught:
        print("warning:", str(warning.message).split(";")[0])
    print(graph.summary())
    print("opaque:", [(o.name, o.reason) for o in graph.opaque])


if __name__ == "__main__":
    main()
