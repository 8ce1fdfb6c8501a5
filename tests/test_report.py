"""fxmaps.report: one self-contained HTML page, checked by parsing it and in headless Chromium.

Oracles: node names and summary rows from ``fxmaps.analyze`` on the same model
and image, the chosen layers from the graph's own layer list, the graph's conv
fill colour from ``KIND_COLORS``.
"""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

import fxmaps
from fxmaps.classify import Kind
from fxmaps.errors import FxmapsWarning, OutputError, one_line
from fxmaps.render.filters import FilterFigures
from fxmaps.render.graph import KIND_COLORS
from fxmaps.render.table import SUMMARY_HEADERS
from fxmaps.report import images as report_images
from fxmaps.report import page as report_module
from fxmaps.report import sections as report_sections
from fxmaps.report.choose import default_layers
from tests import models as toy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = {"svg": "http://www.w3.org/2000/svg"}
VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"})
CHOSEN = ["conv", "layer1.0.add"]  # the layers the shared report shows
CHROMIUM = shutil.which("chromium")


class Page(HTMLParser):
    """What the tests read from the page; checks that every element is closed in order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.images: list[dict[str, str]] = []
        self.rows: list[list[str]] = []
        self.headers: list[str] = []
        self.text: dict[str, list[str]] = {}  # tag -> the text directly inside each
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()
        assert self.open == [], f"elements left open: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {name: value or "" for name, value in attrs}
        self.attributes += [(tag, name, value) for name, value in values.items()]
        if tag == "img":
            self.images.append(values)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.open.append(tag)
        self.text.setdefault(tag, []).append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.open, f"</{tag}> closes nothing"
        assert self.open[-1] == tag, f"</{tag}> closes <{self.open[-1]}>"
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None:
            cell = "".join(self._cell)
            if tag == "th":
                self.headers.append(cell)
            else:
                self.rows[-1].append(cell)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self.open:
            self.text[self.open[-1]][-1] += data


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return toy.CifarResNet().eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return fxmaps.load_image(None, size=32)


@pytest.fixture(scope="module")
def graph(model: nn.Module, image: torch.Tensor) -> fxmaps.ModelGraph:
    return fxmaps.analyze(model, image)


@pytest.fixture(scope="module")
def report_path(
    model: nn.Module, image: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("report") / "toy.html"
    written = fxmaps.report(
        model, image, path, layers=CHOSEN, max_maps=8, title="Toy ResNet", image_label="Chelsea"
    )
    assert written == path
    return path


@pytest.fixture(scope="module")
def text(report_path: Path) -> str:
    return report_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(text: str) -> Page:
    return Page(text)


def chosen_names(graph: fxmaps.ModelGraph) -> list[str]:
    return [layer.name for layer in graph.layers("conv")] + ["layer1.0.add"]


def decode_image(uri: str) -> Image.Image:
    """A ``data:`` URI's image: a palette PNG or a WebP, whichever the report found smaller."""
    mime, _, encoded = uri.partition(";base64,")
    assert mime in ("data:image/png", "data:image/webp"), uri[:40]
    data = base64.b64decode(encoded, validate=True)
    assert data.startswith(PNG_MAGIC) if mime.endswith("png") else data[8:12] == b"WEBP"
    return Image.open(io.BytesIO(data))


def svg_views(text: str) -> dict[str, ET.Element]:
    """The page's drawings of the graph, by view ("blocks", "full"), parsed as XML."""
    views = {}
    for match in re.finditer(
        r"<div class='graph-view' data-view='(\w+)'[^>]*>(<svg.*?</svg>)", text, re.S
    ):
        views[match[1]] = ET.fromstring(match[2])
    return views


def drawn(svg: ET.Element, cls: str, attribute: str) -> list[str]:
    """The ``attribute`` of every ``<g class=cls>`` of a drawing."""
    return [g.attrib[attribute] for g in svg.iterfind(f".//svg:g[@class='{cls}']", SVG_NS)]


# ---------------------------------------------------------------------------- content


def test_the_page_holds_two_drawings_and_images(text: str, page: Page) -> None:
    assert text.startswith("<!DOCTYPE html>")
    assert page.tags.count("svg") == 2  # blocks collapsed, and every node
    assert list(svg_views(text)) == ["blocks", "full"]
    assert ("div", "hidden", "") in page.attributes  # the full view starts hidden
    assert len(page.images) > 3
    assert all(decode_image(image["src"]) for image in page.images)
    assert page.text["h1"] == ["Toy ResNet"]
    assert page.text["title"][0] == "Toy ResNet: fxmaps report"  # then the SVG's titles


def test_the_full_drawing_marks_every_conv(text: str, graph: fxmaps.ModelGraph) -> None:
    svg = svg_views(text)["full"]
    groups = svg.iterfind(".//svg:g[@class='node']", SVG_NS)
    titles = {group.findtext("svg:title", namespaces=SVG_NS) for group in groups}
    convs = {layer.name for layer in graph.layers("conv")}
    assert len(convs) == toy.CIFAR_RESNET["info"]["conv"]
    assert convs <= titles
    assert set(toy.CIFAR_RESNET["downsample"]) <= titles
    nodes = drawn(svg, "node", "data-node")
    assert set(nodes) == titles  # each drawn node names the node it draws
    assert set(nodes) <= {layer.name for layer in graph.layers()}
    assert set(convs) | set(toy.CIFAR_RESNET["downsample"]) <= set(nodes)
    blocks = {block.name for block in graph.blocks()}
    assert set(drawn(svg, "cluster", "data-block")) == blocks


def test_the_collapsed_drawing_marks_each_block(text: str, graph: fxmaps.ModelGraph) -> None:
    svg = svg_views(text)["blocks"]
    nodes = svg.findall(".//svg:g[@class='node']", SVG_NS)
    blocks = {g.attrib["data-block"] for g in nodes if "data-block" in g.attrib}
    assert blocks == set(toy.CIFAR_RESNET["residual_blocks"])
    inside = {name for block in graph.blocks() for name in block.layers}
    singles = {g.attrib["data-node"] for g in nodes if "data-block" not in g.attrib}
    assert "conv1" in singles
    assert not singles & inside  # no layer of a block is drawn on its own


def test_one_map_per_chosen_layer(
    page: Page, graph: fxmaps.ModelGraph, image: torch.Tensor
) -> None:
    alts = [embedded["alt"] for embedded in page.images]
    names = chosen_names(graph)
    convs = [layer.name for layer in graph.layers(["conv", "downsample"])]
    cam = ["class activation maps"]  # a classifier's, before the maps
    assert alts == ["the input image", *cam, *names, *["filters"] * len(convs)]
    captions = page.text["figcaption"]
    assert captions[0].startswith("Grad-CAM at ")
    assert [caption.split(" · ")[0] for caption in captions[1:]] == names + convs
    for caption, name in zip(captions[1:], names, strict=False):
        shape = fxmaps.format_shape(graph.layer(name).out_shape)
        assert caption == f"{name} · {graph.layer(name).kind.value} · {shape}"
    figures = [
        (value) for tag, key, value in page.attributes if tag == "figure" and key == "data-node"
    ]
    assert figures == [fxmaps.cam(graph, image).layer, *names, *convs]
    for embedded in page.images:
        assert decode_image(embedded["src"]).size[0] > 100


def test_the_model_and_input_are_described(page: Page, graph: fxmaps.ModelGraph) -> None:
    facts = dict(zip(page.text["dt"], page.text["dd"], strict=True))
    assert facts == {
        "model": f"CifarResNet, {graph.total_params:,} parameters in {len(graph)} graph nodes",
        "input": "Chelsea",
        "tensor": "1×3×32×32, float32",
    }
    assert f"{graph.total_params:,} parameters" in page.text["p"][0]


def test_the_census_shows_the_nonzero_counts(text: str, graph: fxmaps.ModelGraph) -> None:
    census = text[text.index("<h2>Layers</h2>") :]
    census = census[: census.index("</section>")]
    cells = re.findall(r"<div><b>([\d,]+)</b>([^<]+)</div>", census)
    shown = {kind: int(count.replace(",", "")) for count, kind in cells}
    assert shown == {k: v for k, v in graph.info().items() if v and k != "nodes"}
    assert shown["conv"] == toy.CIFAR_RESNET["info"]["conv"]


def test_the_table_rows_equal_the_summary_rows(page: Page, graph: fxmaps.ModelGraph) -> None:
    assert page.headers == ["rank", "class index", "score", *SUMMARY_HEADERS]  # predictions first
    rows = [row for row in page.rows if len(row) == len(SUMMARY_HEADERS)]
    assert rows == graph.summary_rows()
    paragraphs = "".join(page.text["p"])
    for line in graph.summary_footer():
        assert line in paragraphs


def test_nothing_is_fetched_from_elsewhere(text: str, page: Page) -> None:
    assert 'src="http' not in text
    assert "src='http" not in text
    for tag in ("link", "iframe", "object", "embed"):
        assert tag not in page.tags
    assert page.tags.count("script") == 1  # fxmaps's own, inline
    assert not [name for tag, name, _ in page.attributes if tag == "script"]  # no src
    script = "".join(page.text["script"])
    for call in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "http:", "https:"):
        assert call not in script
    for tag, name, value in page.attributes:
        if name in ("src", "href", "xlink:href", "srcset", "poster", "data", "action"):
            assert value.startswith(("data:", "#")), (tag, name, value[:80])
    style = "".join(page.text["style"])
    assert "url(" not in style
    assert "@import" not in style


def test_a_graph_is_accepted_and_a_one_channel_input_drawn(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3))
    graph = fxmaps.analyze(net)
    path = fxmaps.report(graph, torch.rand(1, 1, 20, 20), tmp_path / "gray.html", max_maps=4)
    page = Page(path.read_text())
    assert page.text["h1"] == ["Sequential"]
    convs = [layer.name for layer in graph.layers("conv")]
    assert convs == ["0", "2"]
    assert [image["alt"] for image in page.images] == [
        "the input image",
        *convs,
        "filters",
        "filters",
    ]
    assert decode_image(page.images[0]["src"]).size == (300, 300)
    assert "id='predictions'" not in path.read_text()  # no classifier: no predictions
    assert "a tensor" in page.text["dd"]


def test_without_graphviz_the_page_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` here
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.warns(FxmapsWarning, match="the report has no graph drawing") as caught:
        path = fxmaps.report(net, torch.rand(1, 3, 12, 12), tmp_path / "r.html")
    assert [warning.filename for warning in caught] == [__file__]  # the caller's line
    text = path.read_text()
    assert "<svg" not in text
    assert "apt-get install graphviz" in text
    assert len(re.findall("data:image/(?:png|webp);base64,", text)) == 3  # input, map, filters


def test_predictions_are_the_models_top_five(
    page: Page, model: nn.Module, image: torch.Tensor
) -> None:
    with torch.no_grad():
        scores = torch.softmax(model(image)[0], dim=0)
    top = scores.topk(5)
    rows = [row for row in page.rows if len(row) == 3]  # the predictions table's
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4, 5]
    assert [int(row[1]) for row in rows] == top.indices.tolist()
    assert [float(row[2]) for row in rows] == pytest.approx(top.values.tolist(), abs=5e-5)
    assert "softmax of linear's 10 outputs" in "".join(page.text["p"])


def test_a_transformer_shows_its_blocks_outputs_as_maps(tmp_path: Path) -> None:
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    ).eval()
    x = torch.rand(1, 3, 32, 32)
    hooked: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda _m, _i, out: hooked.append(out.detach().clone()))
        for layer in vit.encoder.layers
    ]
    try:
        with torch.no_grad():
            vit(x)
    finally:
        for handle in handles:
            handle.remove()
    graph = fxmaps.analyze(vit, x)
    chosen = default_layers(graph)
    assert chosen[0] == "conv_proj"  # the one conv: the patch embedding
    blocks = fxmaps.extract(graph, x, layers=chosen[1:])
    assert len(blocks) == len(vit.encoder.layers) == 2
    for (name, produced), expected in zip(blocks.items(), hooked, strict=True):
        assert torch.equal(produced, expected), name  # each is an encoder layer's output
    page = Page(fxmaps.report(vit, x, tmp_path / "vit.html", max_maps=4).read_text())
    figures = [v for tag, key, v in page.attributes if tag == "figure" and key == "data-node"]
    assert figures[0] == fxmaps.cam(graph, x).layer  # a classifier: where it looks, first
    assert figures[1 : len(chosen) + 1] == chosen
    grid = fxmaps.format_shape((1, 16, 32 // 8, 32 // 8))  # tokens as a grid, class token out
    for caption in page.text["figcaption"][2 : len(chosen) + 1]:
        assert caption.endswith(f" · {grid}")


def test_a_model_without_convs_says_how_to_choose_maps(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    graph = fxmaps.analyze(net, torch.rand(1, 3, 2, 2))
    assert graph.layers("conv") == []
    assert graph.blocks() == []
    path = fxmaps.report(net, torch.rand(1, 3, 2, 2), tmp_path / "mlp.html")
    page = Page(path.read_text())
    assert "figure" not in page.tags  # no maps, no conv to draw filters of, no grid for cam
    assert "No class activation maps for this model" in path.read_text()
    assert "choose layers with <code>layers=</code>" in path.read_text()
    rows = [row for row in page.rows if len(row) == 3]
    assert len(rows) == 3  # a classifier of three classes: its predictions
    chosen = fxmaps.report(net, torch.rand(1, 3, 2, 2), tmp_path / "lin.html", layers="linear")
    names = [
        v
        for tag, k, v in Page(chosen.read_text()).attributes
        if tag == "figure" and k == "data-node"
    ]
    assert names == [layer.name for layer in graph.layers("linear")]


def test_each_mosaic_is_titled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[list[str]] = []
    embed = report_images.figure_uri

    def recording(figure: Figure, **options: Any) -> str:
        titles.append([axes.get_title() for axes in figure.axes])
        return embed(figure, **options)

    monkeypatch.setattr(report_sections, "figure_uri", recording)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3))
    page = Page(fxmaps.report(net, torch.rand(1, 3, 12, 12), tmp_path / "r.html").read_text())
    captions = page.text["figcaption"]
    assert [caption.split(" · ")[0] for caption in captions[:2]] == ["0", "2"]
    mosaics = titles[1:3]  # after the input picture, the two maps; then the filters
    for name, axes_titles in zip(["0", "2"], mosaics, strict=True):
        assert not [line for title in axes_titles for line in title.split("\n")
                    if line.startswith(f"{name}  ")]  # fmt: skip


def test_each_figure_is_drawn_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """savefig(bbox_inches="tight") draws a figure twice (to measure it, then to render it);
    the report crops one drawing, so every embedded image costs one draw."""
    draws: dict[int, int] = {}
    draw = Figure.draw

    def counting(figure: Figure, renderer: Any) -> None:
        draws[id(figure)] = draws.get(id(figure), 0) + 1
        draw(figure, renderer)

    monkeypatch.setattr(Figure, "draw", counting)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 6, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )  # fmt: skip
    page = Page(fxmaps.report(net, torch.rand(1, 3, 16, 16), tmp_path / "r.html").read_text())
    roles = [value for tag, name, value in page.attributes if name == "data-role"]
    assert sorted(set(roles)) == ["cam", "filters", "maps"]
    assert len(page.images) == 1 + len(roles)  # the input picture, then one image a figure
    assert sum(draws.values()) == len(page.images)  # one draw an image, none to measure it


# ---------------------------------------------------------------------------- writing


def test_a_missing_folder_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("report analysed the model before checking its output path")

    monkeypatch.setattr(report_module, "analyze", no_work)
    with pytest.raises(OutputError, match=r"folder '.*missing' does not exist") as excinfo:
        fxmaps.report(nn.Conv2d(3, 4, 3), None, tmp_path / "missing" / "r.html")
    assert excinfo.value.path == str(tmp_path / "missing" / "r.html")


def test_an_error_midway_leaves_the_old_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "r.html"
    target.write_text("old page")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("drawing the filters failed")

    monkeypatch.setattr(FilterFigures, "plot", broken)  # how the report draws filters
    with pytest.raises(RuntimeError, match="drawing the filters failed"):
        fxmaps.report(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.rand(1, 3, 8, 8), target)
    assert target.read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_text = Path.write_text

    def disk_full(self: Path, data: str, *args: object, **kwargs: object) -> int:
        write_text(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        fxmaps.report(nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8), tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- in a browser


@pytest.fixture
def chromium_profile(tmp_path: Path) -> Iterator[Path]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    yield profile
    shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium package is not installed (scripts/setup.sh installs it)",
)
def test_screenshot_in_headless_chromium(
    report_path: Path, tmp_path: Path, chromium_profile: Path
) -> None:
    assert CHROMIUM is not None
    shot = tmp_path / "shot.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={chromium_profile}", "--window-size=1280,2000",
        f"--screenshot={shot}", report_path.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    with Image.open(shot) as screenshot:
        assert screenshot.size == (1280, 2000)
        pixels = np.asarray(screenshot.convert("RGB")).astype(int)
    # The page's own styling: the dark header band across the top.
    assert tuple(pixels[10, 10]) == (0x1D, 0x23, 0x30)
    # Not blank: many colours (the photo, the graph), much drawn on the light background.
    colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    assert len(colours) > 1000
    light = (pixels >= 240).all(axis=2)
    assert 1 - light.mean() > 0.08
    # The graph is drawn: pixels of the conv nodes' fill, at least a few node boxes' worth.
    conv = np.array([int(KIND_COLORS[Kind.CONV][i : i + 2], 16) for i in (1, 3, 5)])
    conv_pixels = (np.abs(pixels - conv).sum(axis=2) <= 3).sum()
    assert conv_pixels > 3 * 60 * 25


def test_a_classifier_s_report_shows_where_it_looks_for_its_top_classes(
    text: str, page: Page, graph: fxmaps.ModelGraph, model: nn.Module, image: torch.Tensor
) -> None:
    with torch.no_grad():
        top = model(image)[0].topk(3).indices.tolist()
    chosen = fxmaps.cam(graph, image).layer  # the node fxmaps.cam picks by itself
    section = text[text.index("<section id='cam'>") :]
    section = section[: section.index("</section>")]
    caption = f"Grad-CAM at {chosen} for the top 3 classes ({', '.join(map(str, top))})"
    assert caption in section
    (src,) = re.findall(r"src='([^']+)'", section)
    assert decode_image(src).size[0] > decode_image(src).size[1]  # three maps side by side
    assert f"data-node='{chosen}' data-role='cam'" in section


def test_a_captured_classifier_s_report_shows_where_it_looks(tmp_path: Path) -> None:
    class Captured(nn.Module):  # data-dependent control flow in its own forward
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            if y.sum() > 0:
                y = y * 2
            return self.fc(y.mean(dim=(2, 3)))

    model = Captured().eval()
    x = torch.rand(1, 3, 16, 16)
    graph = fxmaps.analyze(model, x)
    assert graph.capture is not None
    chosen = fxmaps.cam(graph, x).layer
    text = fxmaps.report(model, x, tmp_path / "r.html").read_text()
    section = text[text.index("<section id='cam'>") :]
    section = section[: section.index("</section>")]
    assert "No class activation maps" not in section
    assert f"data-node='{chosen}' data-role='cam'" in section


def test_a_model_cam_cannot_cut_gets_a_note_saying_why(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).eval()  # no grid but the input
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(fxmaps.InputError) as raised:
        fxmaps.cam(model, x)
    text = fxmaps.report(model, x, tmp_path / "r.html").read_text()
    section = text[text.index("<section id='cam'>") :]
    assert "No class activation maps for this model" in section
    assert html.escape(one_line(raised.value))[:60] in section
