"""The drawing commands of the command line: graph, maps, filters, report and demo.

Through ``main(argv)`` and through ``python -m fxmaps``, on files in a temporary
folder. Expected node names come from ``fxmaps.analyze`` on the same model, not
from the command's own output.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

import fxmaps
from fxmaps.cli import commands, main
from fxmaps.errors import ModelLoadError, OptionError
from fxmaps.render.maps import plot_feature_maps
from tests import models as toy
from tests.conftest import tv_model

ROOT = Path(__file__).parent.parent
TOY = f"{ROOT / 'tests' / 'models.py'}:CifarResNet"
SIZE = ("--input-size", "3", "32", "32")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = {"svg": "http://www.w3.org/2000/svg"}
COMMANDS = ("summary", "graph", "maps", "filters", "report", "bench", "cam", "demo")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def python_m(*argvs: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``python -m fxmaps ARGV`` for each argv, all at once (each start imports torch)."""
    started = [
        (argv, subprocess.Popen([sys.executable, "-m", "fxmaps", *argv], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for argv in argvs
    ]  # fmt: skip
    done = []
    for argv, process in started:
        with process:
            out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
    return done


def toy_graph() -> fxmaps.ModelGraph:
    return fxmaps.analyze(toy.CifarResNet(), torch.randn(1, 3, 32, 32))


def svg_node_titles(path: Path) -> list[str]:
    """The names graphviz drew as nodes (each node group's <title>)."""
    root = ET.parse(path).getroot()
    groups = root.iterfind(".//svg:g[@class='node']", SVG_NS)
    return [group.findtext("svg:title", namespaces=SVG_NS) or "" for group in groups]


def error_line(err: str) -> str:
    """The one line a failed command prints; checks that it is exactly one line."""
    assert err.startswith("fxmaps: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------------- graph


def test_graph_svg_draws_every_conv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "toy.svg"
    code, out, _ = run(capsys, "graph", TOY, *SIZE, "-o", str(path))
    assert code == 0
    assert out == f"wrote {path}\n"
    convs = [layer.name for layer in toy_graph().layers("conv")]
    assert len(convs) == toy.CIFAR_RESNET["info"]["conv"]
    assert set(convs) <= set(svg_node_titles(path))


def test_graph_dot_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, "graph", TOY, *SIZE, "-o", str(tmp_path / "toy.dot"))
    assert code == 0
    source = (tmp_path / "toy.dot").read_text()
    assert source.startswith("digraph CifarResNet {")
    node_ids = set(re.findall(r'^\s*"?([^"\s]+)"? \[label=', source, flags=re.MULTILINE))
    assert {layer.name for layer in toy_graph().layers("conv")} <= node_ids
    code, _, _ = run(capsys, "graph", TOY, *SIZE, "-o", str(tmp_path / "toy.png"))
    assert code == 0
    assert (tmp_path / "toy.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.dot", "toy.png"]


def test_graph_collapse_blocks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    full, collapsed = tmp_path / "full.svg", tmp_path / "collapsed.svg"
    assert run(capsys, "graph", TOY, *SIZE, "-o", str(full))[0] == 0
    assert run(capsys, "graph", TOY, *SIZE, "--collapse", "blocks", "-o", str(collapsed))[0] == 0
    graph = toy_graph()
    residual = graph.blocks("residual")
    assert [block.name for block in residual] == toy.CIFAR_RESNET["residual_blocks"]
    inside = {name for block in residual for name in block.layers}
    titles = svg_node_titles(collapsed)
    assert len(titles) < len(svg_node_titles(full))
    assert {block.name for block in residual} <= set(titles)
    assert not inside & set(titles)
    assert "conv1" in titles  # the stem stays a node of its own


# ---------------------------------------------------------------------------- maps, filters


def drawn(names: list[str]) -> list[str]:
    """The files of ``names`` (plain module paths: each one's name plus ``.png``)."""
    return [f"{name}.png" for name in names]


def assert_index(folder: Path, names: list[str]) -> None:
    """``folder/index.json`` names each of ``names`` and the file that holds it, and no more."""
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert index == {"files": dict(zip(drawn(names), names, strict=True))}


def test_maps_writes_one_png_per_selected_layer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress bars: a terminal only
    folder = tmp_path / "maps"
    code, out, err = run(
        capsys, "maps", TOY, *SIZE, "--layers", "conv1", "layer2.*", "--max-maps", "4",
        "-o", str(folder),
    )  # fmt: skip
    assert code == 0
    names = [layer.name for layer in toy_graph().layers()]
    expected = ["conv1"] + [name for name in names if fnmatch.fnmatchcase(name, "layer2.*")]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*drawn(expected), "index.json"])
    assert_index(folder, expected)
    for path in folder.glob("*.png"):
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert out == f"wrote {len(expected)} maps to {folder}\n"
    assert "drawing maps" in err  # the progress bar
    assert [p.name for p in tmp_path.iterdir()] == ["maps"]  # no temporary folder left


def test_maps_of_a_signal_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--input-size C L`` gives a model of signals a (1, C, L) signal, not a photo."""
    folder = tmp_path / "maps"
    argv = ("maps", "tests.models:Conv1dNet", "--input-size", "2", "64", "-o", str(folder))
    code, out, _ = run(capsys, *argv)
    assert code == 0
    graph = fxmaps.analyze(toy.Conv1dNet(), torch.randn(1, 2, 64))
    expected = [layer.name for layer in graph.layers("conv")]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*drawn(expected), "index.json"])
    assert out == f"wrote {len(expected)} maps to {folder}\n"


def test_maps_of_module_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "maps"
    code, out, _ = run(
        capsys, "maps", TOY, *SIZE, "--layers", "module:layer1", "module:layer3.0",
        "-o", str(folder),
    )  # fmt: skip
    assert code == 0
    graph = toy_graph()
    expected = [
        layer.name for path in ("layer1", "layer3.0") for layer in graph.layers(fxmaps.Module(path))
    ]
    assert len(expected) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([*drawn(expected), "index.json"])
    assert out == f"wrote 2 maps to {folder}\n"


def test_maps_into_an_existing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    code, _, _ = run(capsys, "maps", TOY, *SIZE, "--layers", "linear", "-o", str(tmp_path))
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "keep.txt", "linear.png"]
    assert_index(tmp_path, ["linear"])


def test_filters_writes_one_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first = toy_graph().layers("conv")[0].name
    code, out, _ = run(capsys, "filters", TOY, "--layer", first, "-o", str(tmp_path / "f.png"))
    assert code == 0
    assert out == f"wrote {tmp_path / 'f.png'}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
    assert (tmp_path / "f.png").read_bytes().startswith(PNG_MAGIC)


# ---------------------------------------------------------------------------- cam


def test_cam_draws_each_method(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cam.png"
    argv = ("cam", TOY, *SIZE, "--target", "4", "--method", "gradcam", "layercam")
    code, out, _ = run(capsys, *argv, "-o", str(path))
    assert code == 0
    expected = fxmaps.cam(toy_graph(), torch.randn(1, 3, 32, 32), 4)
    assert out == f"gradcam at {expected.layer}, class 4\nwrote {path}\n"
    assert path.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (("--method", "gradcamm"), r"method='gradcamm' is not a CAM method"),
        (("--layer", "linear"), r"layer='linear' gives .*no spatial grid"),
        (("--target", "10"), r"target=10 is out of range .* use 0..9"),
    ],
)
def test_cam_errors_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: tuple[str, str], match: str
) -> None:
    path = tmp_path / "cam.png"
    code, _, err = run(capsys, "cam", TOY, *SIZE, *option, "-o", str(path))
    assert code == 2
    assert re.search(match, err)
    assert not path.exists()


def test_cam_of_a_signal_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--input-size C L``: a model of signals gets a random (1, C, L) signal, seeded."""
    path = tmp_path / "cam.png"
    argv = ("cam", "tests.models:Conv1dNet", "--input-size", "2", "64", "--seed", "3")
    code, out, _ = run(capsys, *argv, "--method", "gradcam", "scorecam", "-o", str(path))
    assert code == 0
    torch.manual_seed(3)
    model = toy.Conv1dNet()
    expected = fxmaps.cam(model, torch.randn(1, 2, 64))
    assert out == f"gradcam at {expected.layer}, class {expected.targets[0]}\nwrote {path}\n"
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_cam_of_a_signal_model_refuses_a_photo(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "cam.png"
    argv = ("cam", "tests.models:Conv1dNet", "--input-size", "2", "64", "--image", "cat.jpg")
    code, _, err = run(capsys, *argv, "-o", str(path))
    assert code == 2
    assert re.search(r"--image cat.jpg is a photo.*--input-size 2 64 asks for a signal", err)
    assert not path.exists()


# ---------------------------------------------------------------------------- report


def test_report_writes_html(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress bars: a terminal only
    path = tmp_path / "toy.html"
    code, out, err = run(capsys, "report", TOY, *SIZE, "--max-maps", "4", "-o", str(path))
    assert code == 0
    assert out == f"wrote {path}\n"
    assert "drawing maps" in err
    text = path.read_text()
    assert "<svg" in text
    images = re.findall(r"data:image/(?:png|webp);base64,", text)
    graph = toy_graph()  # the input, a classifier's class activation maps (one image),
    # each conv's maps (the default), each conv's filters
    convs = graph.layers(["conv", "downsample"])
    assert len(images) == 1 + 1 + len(graph.layers("conv")) + len(convs)
    assert "<section id='cam'>" in text
    assert f"<h1>{TOY}</h1>" in text
    assert "the bundled default photo" in text
    assert "1×3×32×32" in text
    assert [p.name for p in tmp_path.iterdir()] == ["toy.html"]


def test_report_of_a_signal_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--input-size C L``: the page is made from a random (1, C, L) signal, not a photo."""
    path = tmp_path / "signal.html"
    argv = ("report", "tests.models:Conv1dNet", "--input-size", "2", "64", "-o", str(path))
    code, out, _ = run(capsys, *argv)
    assert (code, out) == (0, f"wrote {path}\n")
    text = path.read_text()
    graph = fxmaps.analyze(toy.Conv1dNet(), torch.randn(1, 2, 64))
    convs = [layer.name for layer in graph.layers("conv")]
    assert re.findall(r"<figure data-node='([^']+)' data-role='maps'>", text) == convs
    assert re.findall(r"<figure data-node='([^']+)' data-role='filters'>", text) == convs
    assert "a random signal (1, 2, 64)" in text
    assert "default photo" not in text


# ---------------------------------------------------------------------------- errors


def test_a_failure_while_drawing_maps_leaves_no_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []

    def failing_third(maps: fxmaps.FeatureMaps, name: str, **options: object) -> object:
        drawn.append(name)
        if len(drawn) == 3:
            raise OptionError("drawing failed on purpose")
        return plot_feature_maps(maps, name, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(commands, "plot_feature_maps", failing_third)
    code, _, err = run(capsys, "maps", TOY, *SIZE, "-o", str(tmp_path / "maps"))
    assert code == 2
    assert err.endswith("fxmaps: error: drawing failed on purpose\n")
    assert len(drawn) == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["f.png", "f.svg"])
def test_a_failed_write_keeps_the_old_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    target = tmp_path / name
    target.write_bytes(b"old")

    def full_disk(self: object, path: Path | BinaryIO, *args: object, **options: object) -> None:
        if isinstance(path, str | Path):
            Path(path).write_bytes(PNG_MAGIC)  # a partial file, then the failure
        else:
            path.write(PNG_MAGIC)
        raise OSError(28, "No space left on device")

    # A PNG is encoded by PIL (fxmaps.save_figure), anything else by savefig.
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", full_disk)
    monkeypatch.setattr("PIL.Image.Image.save", full_disk)
    code, _, err = run(capsys, "filters", TOY, "-o", str(target))
    assert code == 2
    assert "No space left on device" in error_line(err)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert target.read_bytes() == b"old"


def test_debug_raises(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="'resnet1' is not a torchvision model") as excinfo:
        main(["report", "resnet1", "-o", str(tmp_path / "r.html"), "--debug"])
    assert excinfo.value.spec == "resnet1"
    assert "resnet18" in excinfo.value.candidates


# ---------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit, match="0"):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fxmaps {command}")
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert examples
    assert all(line.startswith(f"  fxmaps {command}") for line in examples if line)


# ---------------------------------------------------------------------------- python -m fxmaps


def test_python_m_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    argv = ("report", "resnet1", "-o", str(tmp_path / "r.html"))
    plain, debug = python_m(argv, (*argv, "--debug"))
    assert (plain.returncode, plain.stdout) == (2, "")
    assert "did you mean resnet18" in error_line(plain.stderr)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "fxmaps.errors.ModelLoadError: 'resnet1' is not a torchvision model" in debug.stderr
    assert list(tmp_path.iterdir()) == []


def test_python_m_demo(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    [result] = python_m(("demo", "-o", str(folder)))
    assert result.returncode == 0, result.stderr
    assert f"wrote into {folder}:" in result.stdout
    assert f"open {folder / 'report.html'} in a browser" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == [
        "cam.png",
        "filters.png",
        "graph.svg",
        "maps",
        "report.html",
    ]
    resnet = fxmaps.analyze(tv_model("resnet18"))
    convs = [layer.name for layer in resnet.layers("conv")]
    maps = sorted(p.name for p in (folder / "maps").iterdir())
    assert maps == sorted([*drawn(convs), "index.json"])
    assert_index(folder / "maps", convs)
    assert set(convs) <= set(svg_node_titles(folder / "graph.svg"))
    assert (folder / "filters.png").read_bytes().startswith(PNG_MAGIC)
    assert (folder / "cam.png").read_bytes().startswith(PNG_MAGIC)
    assert "cam.png       where it looks for class" in result.stdout
    page = (folder / "report.html").read_text()
    assert "<svg" in page
    assert "data:image/png;base64," in page
    assert "drawing maps" not in result.stderr  # a pipe is no terminal: no progress bars
    assert "\r" not in result.stderr
    assert "resnet18 with random weights (untrained): " in result.stdout
    assert "<p>ResNet · random weights (untrained) · " in page
