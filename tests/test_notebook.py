"""fxmaps in a notebook: every record and figure shows itself in a fresh Jupyter kernel.

The notebooks run in a real kernel through nbclient (``examples/fxmaps_tour.ipynb`` as
shipped, and a small one under the Agg backend); their outputs are checked against the
graph, the maps and the statistics computed here.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import fxmaps

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel")

ROOT = Path(__file__).parent.parent
TOUR = ROOT / "examples" / "fxmaps_tour.ipynb"


def run_notebook(notebook: Any, folder: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """Execute ``notebook`` in a fresh kernel that imports this checkout's fxmaps."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}
    )
    client.execute()
    return notebook


def outputs(notebook: Any, source: str) -> dict[str, Any]:
    """The display data of the code cell whose source holds ``source``, by MIME type."""
    cells = [c for c in notebook.cells if c.cell_type == "code" and source in c.source]
    assert len(cells) == 1, f"{len(cells)} cells hold {source!r}"
    found: dict[str, Any] = {}
    for output in cells[0].outputs:
        assert output.output_type != "error", output
        found.update(output.get("data", {}))
    return found


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Any:
    notebook = nbformat.read(TOUR, as_version=4)
    with pytest.MonkeyPatch.context() as monkeypatch:
        return run_notebook(notebook, tmp_path_factory.mktemp("tour"), monkeypatch)


@pytest.fixture(scope="module")
def resnet_graph() -> fxmaps.ModelGraph:
    model = torchvision.models.resnet18(weights=None).eval()
    return fxmaps.analyze(model, fxmaps.load_image(size=112))


def test_the_tour_is_stored_without_outputs() -> None:
    notebook = nbformat.read(TOUR, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_every_figure_of_the_tour_shows_as_png(tour: Any) -> None:
    figures = [c for c in tour.cells if c.cell_type == "code" and "fxmaps.plot_" in c.source]
    assert len(figures) >= 6
    for cell in figures:
        data = outputs(tour, cell.source)
        assert "image/png" in data, cell.source
        assert data["text/plain"].startswith("<Figure size")


def test_the_graph_shows_its_census_and_collapsed_diagram(
    tour: Any, resnet_graph: fxmaps.ModelGraph
) -> None:
    page = outputs(tour, "g = fxmaps.analyze(model, image)\ng")["text/html"]
    assert "<svg" in page
    for key, value in resnet_graph.info().items():
        if value:
            assert f"<b>{key}</b> {value}</span>" in page
    # collapsed by blocks: each residual block is one node, its convs are not drawn
    blocks = [b.name for b in resnet_graph.blocks() if b.kind is fxmaps.BlockKind.RESIDUAL]
    assert blocks
    for name in blocks:
        assert f"<title>{name}</title>" in page
    assert "<title>layer1.0.conv1</title>" not in page


def test_the_summary_shows_as_an_html_table(tour: Any, resnet_graph: fxmaps.ModelGraph) -> None:
    data = outputs(tour, 'g.summary("conv")')
    assert data["text/plain"] == resnet_graph.summary("conv")  # printed as the table, unquoted
    page = data["text/html"]
    assert page.count("<tr>") == 1 + len(resnet_graph.layers("conv"))
    for layer in resnet_graph.layers("conv"):
        assert f">{layer.name}</td>" in page


def test_the_maps_show_as_a_table_with_thumbnails(tour: Any) -> None:
    page = outputs(tour, "maps = fxmaps.extract(")["text/html"]
    names = ["layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.relu_1", "fc"]
    for name, shape in zip(
        names, ["1×64×28×28", "1×128×14×14", "1×512×4×4", "1×1000"], strict=True
    ):
        assert f"<code>{name}</code>" in page
        assert shape in page
    assert page.count('<img src="data:image/png;base64,') == len(names)


def test_the_statistics_show_as_a_table(tour: Any) -> None:
    page = outputs(tour, "stats = fxmaps.channel_stats(")["text/html"]
    for name, channels in (("layer1.0.conv1", 64), ("layer4.1.conv2", 512)):
        assert f"<code>{name}</code></td><td style" in page
        assert f">{channels}</td>" in page
    assert "over 8 samples" in page


def test_the_graph_diagram_shows_as_svg(tour: Any) -> None:
    data = outputs(tour, "fxmaps.render_graph(g")
    assert "<svg" in data["image/svg+xml"]


def test_figures_show_under_the_agg_backend_and_none_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cells = [
        "import matplotlib, torch, fxmaps\nprint(matplotlib.get_backend())",
        "fxmaps.plot_feature_maps(torch.rand(1, 4, 8, 8))",
        "import matplotlib.pyplot as plt\n"
        "for _ in range(20):\n    fxmaps.plot_feature_maps(torch.rand(1, 4, 8, 8))\n"
        "print(len(plt.get_fignums()))",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    run_notebook(notebook, tmp_path, monkeypatch, MPLBACKEND="agg")
    backend, figure, loop = (cell.outputs for cell in notebook.cells)
    assert backend[0]["text"].strip().lower() == "agg"
    assert "image/png" in figure[0]["data"]
    assert loop[0]["text"].strip() == "0"  # no pyplot figure made, none kept


# -- in this process ------------------------------------------------------------------------------


def test_summary_is_the_same_text_and_pickles() -> None:
    graph = fxmaps.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), torch.rand(1, 3, 8, 8))
    summary = graph.summary()
    assert isinstance(summary, str)
    rows = graph.summary_rows()
    table = str(summary).splitlines()[2 : 2 + len(rows)]  # under the header and its rule
    assert [line.split()[0] for line in table] == [row[0] for row in rows]
    assert pickle.loads(pickle.dumps(summary)) == summary
    assert "<td" in summary._repr_html_()  # type: ignore[attr-defined]


def test_the_graph_without_dot_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    graph = fxmaps.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), torch.rand(1, 3, 8, 8))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` there
    page = graph._repr_html_()
    assert "<svg" not in page
    assert "Graphviz's <code>dot</code> program is not on PATH" in page
    assert "<b>conv</b> 1</span>" in page


def test_figures_show_themselves_as_png() -> None:
    fig = fxmaps.plot_feature_maps(torch.rand(1, 4, 8, 8))
    png = fig._repr_png_()  # type: ignore[attr-defined]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == tuple(round(v) for v in fig.get_size_inches() * fig.dpi)


def test_map_thumbnails_are_the_mosaic_of_the_first_channels() -> None:
    import base64
    import io
    import re

    import matplotlib
    import matplotlib.image
    import numpy as np

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5))
    maps = fxmaps.extract(model, torch.rand(1, 3, 8, 8), layers=["0", "3"])
    page = maps._repr_html_()
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 2
    thumbnail = matplotlib.image.imread(io.BytesIO(base64.b64decode(uris[0])), format="png")
    zoom = 96 // 13  # four 6×6 tiles and one pixel between them: 13×13, enlarged
    assert thumbnail.shape[:2] == (13 * zoom, 13 * zoom)
    first = maps["0"][0, 0].numpy()
    scaled = (first - first.min()) / (first.max() - first.min())
    expected = matplotlib.colormaps["viridis"](scaled)[..., :3]
    drawn = thumbnail[: 6 * zoom : zoom, : 6 * zoom : zoom, :3]
    np.testing.assert_allclose(drawn, expected, atol=2 / 255)
    assert "<code>3</code>" in page
    assert "1×5" in page
