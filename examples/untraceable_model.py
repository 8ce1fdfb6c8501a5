"""A model torch.fx cannot trace as a whole: fxmaps runs what it cannot trace, and says so.

``Router`` decides at run time which branch to take from the data itself, which symbolic
tracing cannot record. Given an example input, fxmaps runs ``Router``'s ``forward`` as
Python, traces everything else, and records the ops and layers the branch took: its
convs are nodes with exact maps, and ``g.eager`` says which call ran as Python and why.
Without an input nothing can run, so ``Router`` stays one opaque node, with a warning.
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
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(1, 3, 32, 32)
    graph = fxmaps.analyze(model, x)  # the ReLU makes the mean positive: `bright` runs
    print(graph.summary())
    print("eager:", [(region.name, region.reason) for region in graph.eager])
    maps = fxmaps.extract(graph, x, layers="router.*")
    print("router maps:", {name: tuple(m.shape) for name, m in maps.items()})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fxmaps.FxmapsWarning)
        shapes_only = fxmaps.analyze(model)  # nothing to run it with
    for warning in caught:
        print("warning:", str(warning.message).split(";")[0])
    print("opaque without an input:", [o.name for o in shapes_only.opaque])


if __name__ == "__main__":
    main()
