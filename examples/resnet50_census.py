"""The resnet50 layer census, done from the graph instead of by walking ``children()``.

Walking ``model.children()`` and testing ``type(child) == nn.Conv2d`` misses nested
containers and needs the shortcut's module name to find downsample convs. fxmaps traces
the model and finds shortcuts from the graph's structure, so the same call works on any
model. Run: ``python examples/resnet50_census.py``.
"""

from __future__ import annotations

import torchvision

import fxmaps


def main() -> None:
    model = torchvision.models.resnet50(weights=None)  # weights="DEFAULT" where there is internet
    graph = fxmaps.analyze(model)
    info = graph.info()
    print({key: info[key] for key in ("conv", "downsample", "linear", "sequential", "residual")})
    print("first convs:", [layer.name for layer in graph.layers("conv")[:4]])
    for residual in graph.residuals():
        if residual.skip is fxmaps.SkipKind.PROJECTION:
            print(
                f"{residual.block}: projection shortcut {residual.downsample} -> {residual.merge}"
            )


if __name__ == "__main__":
    main()
