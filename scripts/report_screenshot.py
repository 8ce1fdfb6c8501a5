"""Re-make the README's screenshot of the interactive report: docs/images/report_resnet18.png.

resnet18 (random weights) looking at the bundled photo, its report opened in headless
Chromium at ``#node=layer2.0.conv1`` so that the graph shows that node selected and the
panel its facts, maps and filters. Needs Debian's ``chromium`` and ``chromium-driver``
(``make setup``). Run: ``.venv/bin/python scripts/report_screenshot.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
import torchvision
from PIL import Image
from selenium import webdriver

import fxmaps

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "images" / "report_resnet18.png"
NODE = "layer2.0.conv1"


def main() -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise SystemExit(
            "needs chromium and chromedriver: apt-get install chromium chromium-driver"
        )
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    with tempfile.TemporaryDirectory() as scratch:
        page = fxmaps.report(
            model, None, Path(scratch) / "report.html", title="resnet18",
            weights="random weights (untrained)",
        )  # fmt: skip
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1400,900", "--hide-scrollbars",
                         f"--user-data-dir={Path(scratch) / 'profile'}"):  # fmt: skip
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
        try:
            browser.get(f"{page.as_uri()}#node={NODE}")
            browser.execute_script("document.getElementById('graph').scrollIntoView()")
            shot = Path(scratch) / "shot.png"
            browser.save_screenshot(str(shot))
        finally:
            browser.quit()
        with Image.open(shot) as image:
            image.convert("RGB").quantize(colors=256).save(TARGET, optimize=True)
    print(f"wrote {TARGET.relative_to(ROOT)} ({TARGET.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
