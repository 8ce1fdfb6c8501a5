"""Re-make the pictures the README shows, from the examples, into docs/images/.

Run: ``.venv/bin/python scripts/readme_images.py`` (about a minute on two cores). The PNGs
are stored as 256-colour palettes, which keeps them small without visible loss for
colormapped maps.
"""

from __future__ import annotations

import runpy
import shutil
import tempfile
from pathlib import Path

import torch
import torchvision
from PIL import Image

import fxmaps

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
EXAMPLES = ROOT / "examples"


def example(name: str) -> dict[str, object]:
    return runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")


def store(source: Path, name: str) -> Path:
    """``source`` as a palette PNG named ``name`` in docs/images."""
    target = IMAGES / name
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256).save(target, optimize=True)
    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size // 1024} KiB)")
    return target


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        vgg16_maps = example("vgg16_maps.py")["vgg16_maps"]
        assert callable(vgg16_maps)
        vgg16_maps(work / "vgg")
        store(work / "vgg" / "overview.png", "vgg16_overview.png")
        digits = example("digits_simplecnn.py")["digits_simplecnn"]
        assert callable(digits)
        digits(work / "digits")
        for picture in ("conv1_filters", "conv1_maps", "conv2_maps"):
            store(work / "digits" / f"simplecnn_{picture}.png", f"simplecnn_{picture}.png")
        top = example("digits_top_images.py")["digits_top_images"]
        assert callable(top)
        top(work / "top")
        store(work / "top" / "conv2_top_digits.png", "simplecnn_conv2_top_digits.png")
        cams = example("cam_digits.py")["cam_digits"]
        assert callable(cams)
        cams(work / "cam")
        store(work / "cam" / "simplecnn_cam_digits.png", "simplecnn_cam_digits.png")
        model = fxmaps.analyze(torchvision.models.resnet18().eval(), fxmaps.load_image())
        svg = fxmaps.save_graph(
            fxmaps.render_graph(model, collapse="blocks"), work / "resnet18_blocks.svg"
        )
        shutil.copyfile(svg, IMAGES / "resnet18_blocks.svg")
        print(f"wrote {(IMAGES / 'resnet18_blocks.svg').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
