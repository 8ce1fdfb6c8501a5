"""The interactive report in a real browser: headless Chromium driven by selenium.

Oracles: node names, summary rows and blocks from ``fxmaps.analyze`` on the same
model and image; the figures' own ``<img>`` sources in the page; sort orders
computed here from the summary rows; the browser's own logs (console messages
and every network request the page made, from the DevTools ``Network`` events).
Skips with a reason where Chromium or its driver is not installed (``make setup``
installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import torch
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from torch import nn

import fxmaps
from fxmaps.render.table import NUMERIC_HEADERS, SUMMARY_HEADERS
from tests import models as toy

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (scripts/setup.sh "
    "installs them: apt-get install chromium chromium-driver)",
)
ODD_NAMES = ['a"b<c>&d', "x'y z", "ü#ñ%20"]  # quotes, markup, spaces, a fragment, escapes


class OddNames(nn.Module):
    """Convs whose names need escaping in HTML attributes and in a URL fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(3, 3, 3, padding=1) for name in ODD_NAMES})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs.values():
            x = conv(x)
        return x


@pytest.fixture(scope="module")
def graph() -> fxmaps.ModelGraph:
    torch.manual_seed(0)
    return fxmaps.analyze(toy.CifarResNet().eval(), fxmaps.load_image(None, size=32))


@pytest.fixture(scope="module")
def url(graph: fxmaps.ModelGraph, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "toy.html"
    fxmaps.report(graph, fxmaps.load_image(None, size=32), path, max_maps=4)
    return path.as_uri()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    assert CHROMIUM is not None
    assert CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: webdriver.Chrome, url: str) -> Iterator[webdriver.Chrome]:
    """The report freshly opened; afterwards, no console message and no request elsewhere."""
    open_page(browser, url)
    yield browser
    check_logs(browser, url)


def logs(browser: webdriver.Chrome, kind: str) -> list[dict[str, Any]]:
    """The browser's ``kind`` log since it was last read ("browser": the console)."""
    entries: list[dict[str, Any]] = browser.get_log(kind)  # type: ignore[no-untyped-call]
    return entries  # selenium leaves get_log unannotated


def open_page(browser: webdriver.Chrome, url: str) -> None:
    browser.get("about:blank")  # a fresh load even when only the fragment differs
    logs(browser, "browser")  # what came before is not the report's
    logs(browser, "performance")
    browser.get(url)


def check_logs(browser: webdriver.Chrome, url: str) -> None:
    messages = [entry for entry in logs(browser, "browser") if entry["level"] != "DEBUG"]
    assert messages == []
    document = url.split("#")[0]
    requested = []
    for entry in logs(browser, "performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            requested.append((params.get("documentURL", ""), params["request"]["url"]))
    assert requested  # the log works: the page itself was requested
    for origin, address in requested:
        assert not address.startswith(("http:", "https:", "ws:", "wss:", "ftp:")), address
        if origin.split("#")[0] == document:
            assert address.startswith("data:") or address.split("#")[0] == document, address


def visible(element: WebElement) -> bool:
    return bool(element.is_displayed())


def view(browser: webdriver.Chrome, name: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f".graph-view[data-view='{name}']")


def node(browser: webdriver.Chrome, scope: WebElement, name: str) -> WebElement:
    """The drawn node named ``name`` in ``scope``, found by comparing names (no selector
    quoting involved)."""
    for element in scope.find_elements(By.CSS_SELECTOR, "g.node[data-node]"):
        if element.get_attribute("data-node") == name:
            return element
    raise AssertionError(f"no drawn node {name!r}")


def panel_facts(browser: webdriver.Chrome) -> dict[str, str]:
    panel = browser.find_element(By.ID, "node-panel")
    terms = [str(e.get_attribute("textContent")) for e in panel.find_elements(By.TAG_NAME, "dt")]
    values = [str(e.get_attribute("textContent")) for e in panel.find_elements(By.TAG_NAME, "dd")]
    return dict(zip(terms, values, strict=True))


def expected_facts(graph: fxmaps.ModelGraph, name: str) -> dict[str, str]:
    """The summary row of ``name``, by header, its empty cells left out."""
    row = next(row for row in graph.summary_rows() if row[0] == name)
    return {h: cell for h, cell in zip(SUMMARY_HEADERS, row, strict=True) if cell and h != "name"}


def figure_source(browser: webdriver.Chrome, role: str, name: str) -> str:
    for figure in browser.find_elements(By.CSS_SELECTOR, f"main figure[data-role='{role}']"):
        if figure.get_attribute("data-node") == name:
            return str(figure.find_element(By.TAG_NAME, "img").get_attribute("src"))
    raise AssertionError(f"no {role} figure of {name!r}")


def panel_sources(browser: webdriver.Chrome) -> dict[str, str]:
    panel = browser.find_element(By.ID, "node-panel")
    return {
        str(f.get_attribute("data-role")): str(
            f.find_element(By.TAG_NAME, "img").get_attribute("src")
        )
        for f in panel.find_elements(By.TAG_NAME, "figure")
    }


# ---------------------------------------------------------------------------- the graph


def test_the_graph_starts_collapsed_and_a_node_opens_its_panel(
    page: webdriver.Chrome, graph: fxmaps.ModelGraph
) -> None:
    blocks, full = view(page, "blocks"), view(page, "full")
    assert visible(blocks)
    assert not visible(full)
    panel = page.find_element(By.ID, "node-panel")
    assert not visible(panel)
    node(page, blocks, "conv1").click()
    assert visible(panel)
    assert panel.get_attribute("data-node") == "conv1"
    assert panel_facts(page) == expected_facts(graph, "conv1")
    assert expected_facts(graph, "conv1")["kind"] == "conv"
    # The panel shows the very figures of the page: the maps and the filters of conv1.
    assert panel_sources(page) == {
        "maps": figure_source(page, "maps", "conv1"),
        "filters": figure_source(page, "filters", "conv1"),
    }
    assert page.execute_script("return location.hash") == "#node=conv1"


def test_a_block_expands_on_click(page: webdriver.Chrome, graph: fxmaps.ModelGraph) -> None:
    blocks = view(page, "blocks")
    collapsed = [
        e.get_attribute("data-block")
        for e in blocks.find_elements(By.CSS_SELECTOR, "g.node[data-block]")
    ]
    assert collapsed == toy.CIFAR_RESNET["residual_blocks"]
    node(page, blocks, "layer2.0").click()
    full = view(page, "full")
    assert visible(full)
    assert not visible(blocks)
    focused = full.find_elements(By.CSS_SELECTOR, "g.cluster.focused")
    assert [e.get_attribute("data-block") for e in focused] == ["layer2.0"]
    block = next(block for block in graph.blocks() if block.name == "layer2.0")
    drawn = {e.get_attribute("data-node") for e in full.find_elements(By.CSS_SELECTOR, "g.node")}
    assert {name for name in block.layers if graph[name].kind != "other"} <= drawn
    # Every node of the block is now on screen, inside the graph's frame.
    frame = full.rect
    for name in ("layer2.0.conv1", "layer2.0.shortcut.0"):
        box = node(page, full, name).rect
        assert frame["x"] <= box["x"]
        assert box["x"] + box["width"] <= frame["x"] + frame["width"]
        assert frame["y"] <= box["y"]
        assert box["y"] + box["height"] <= frame["y"] + frame["height"]
    page.find_element(By.CSS_SELECTOR, "button[data-view='blocks']").click()
    assert visible(blocks)


def test_the_url_fragment_opens_a_node(
    browser: webdriver.Chrome, url: str, graph: fxmaps.ModelGraph
) -> None:
    name = toy.CIFAR_RESNET["downsample"][0]  # inside a block: the full view opens
    open_page(browser, f"{url}#node={quote(name, safe='')}")
    panel = browser.find_element(By.ID, "node-panel")
    assert visible(panel)
    assert panel.get_attribute("data-node") == name
    assert panel_facts(browser) == expected_facts(graph, name)
    assert panel_facts(browser)["kind"] == "downsample"
    assert visible(view(browser, "full"))
    drawn = node(browser, view(browser, "full"), name)
    assert "selected" in str(drawn.get_attribute("class"))
    # The graph centres the node in what the panel leaves uncovered.
    frame, box = view(browser, "full").rect, drawn.rect
    assert frame["x"] <= box["x"]
    assert box["x"] + box["width"] <= panel.rect["x"]
    assert frame["y"] <= box["y"]
    assert box["y"] + box["height"] <= frame["y"] + frame["height"]
    # A fragment changed while the page is open selects too.
    browser.execute_script("location.hash = arguments[0]", "#node=layer1.0.conv2")
    assert panel.get_attribute("data-node") == "layer1.0.conv2"
    check_logs(browser, url)


def test_zoom_with_the_wheel_and_pan_by_dragging(page: webdriver.Chrome) -> None:
    blocks = view(page, "blocks")
    svg = blocks.find_element(By.TAG_NAME, "svg")

    def box() -> list[float]:
        box = page.execute_script("return arguments[0].getAttribute('viewBox')", svg)
        return [float(v) for v in str(box).split()]

    before = box()
    ActionChains(page).scroll_to_element(blocks).scroll_from_origin(
        webdriver.common.actions.wheel_input.ScrollOrigin.from_element(blocks), 0, -300
    ).perform()
    zoomed = box()
    assert zoomed[2] < before[2] * 0.8  # zoomed in: a narrower part of the drawing
    assert zoomed[3] / zoomed[2] == pytest.approx(before[3] / before[2])  # no stretching
    ActionChains(page).move_to_element(blocks).click_and_hold().move_by_offset(
        120, 60
    ).release().perform()
    panned = box()
    assert panned[2:] == zoomed[2:]
    assert panned[0] < zoomed[0]  # dragged right: the view moved left over the drawing
    assert panned[1] < zoomed[1]
    assert not visible(page.find_element(By.ID, "node-panel"))  # a drag is no click


# ---------------------------------------------------------------------------- the table


def test_search_sort_and_select_from_the_table(
    page: webdriver.Chrome, graph: fxmaps.ModelGraph
) -> None:
    rows = page.find_elements(By.CSS_SELECTOR, "#node-table tbody tr")
    names = [row.get_attribute("data-node") for row in rows]
    assert names == [layer.name for layer in graph.layers()]
    search = page.find_element(By.ID, "node-search")
    search.send_keys("layer2.0 conv")
    shown = [row.get_attribute("data-node") for row in rows if visible(row)]
    wanted = [row[0] for row in graph.summary_rows() if all(
        word in " ".join(row).lower() for word in ("layer2.0", "conv"))]  # fmt: skip
    assert shown == wanted
    assert "layer2.0.conv1" in shown
    search.clear()
    search.send_keys(" ")  # an input event with nothing to look for: every row again
    assert all(visible(row) for row in rows)

    header = SUMMARY_HEADERS.index("params")
    assert "params" in NUMERIC_HEADERS
    params = page.find_elements(By.CSS_SELECTOR, "#node-table thead th")[header]
    params.click()
    assert params.get_attribute("aria-sort") == "ascending"

    def order() -> list[str]:
        return [
            str(r.get_attribute("data-node"))
            for r in page.find_elements(By.CSS_SELECTOR, "#node-table tbody tr")
        ]

    def count(cell: str) -> int:
        return int(cell.replace(",", "")) if cell.replace(",", "").isdigit() else -1

    rows_by_params = sorted(graph.summary_rows(), key=lambda row: count(row[header]))
    assert order() == [row[0] for row in rows_by_params]
    params.click()
    assert params.get_attribute("aria-sort") == "descending"
    descending = sorted(graph.summary_rows(), key=lambda row: -count(row[header]))
    assert order() == [row[0] for row in descending]
    largest = descending[0][0]
    page.find_element(By.CSS_SELECTOR, "#node-table tbody tr").click()
    panel = page.find_element(By.ID, "node-panel")
    assert panel.get_attribute("data-node") == largest
    assert panel_facts(page) == expected_facts(graph, largest)


# ---------------------------------------------------------------------------- names


def test_names_that_need_escaping_round_trip(browser: webdriver.Chrome, tmp_path: Path) -> None:
    model = OddNames().eval()
    graph = fxmaps.analyze(model, torch.rand(1, 3, 8, 8))
    names = [layer.name for layer in graph.layers("conv")]
    assert names == [f"convs.{name}" for name in ODD_NAMES]
    url = fxmaps.report(model, torch.rand(1, 3, 8, 8), tmp_path / "odd.html", max_maps=2).as_uri()
    for name in names:
        open_page(browser, f"{url}#node={quote(name, safe='')}")
        panel = browser.find_element(By.ID, "node-panel")
        assert panel.get_attribute("data-node") == name
        assert panel_sources(browser)["maps"] == figure_source(browser, "maps", name)
        drawn = node(browser, view(browser, "full"), name)
        assert "selected" in str(drawn.get_attribute("class"))
    browser.find_element(By.CSS_SELECTOR, "#node-panel .close").click()
    node(browser, view(browser, "full"), names[0]).click()
    assert browser.find_element(By.ID, "node-panel").get_attribute("data-node") == names[0]
    check_logs(browser, url)
