"""Node names are not paths: every command that writes files keeps them inside ``-o``.

``nn.Module.add_module`` accepts ``/`` and ``\\`` in names, so a module name can read as an
absolute path, a path into a subfolder, or anything unicode allows. The files a command writes
are named by :func:`fxmaps.files.node_files`, and the folder's ``index.json`` says which file
holds which node; the oracle for the names is the model's own module tree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import fxmaps
from fxmaps.cli import main
from fxmaps.files import INDEX, node_files

ESCAPE = Path("/tmp/fxmaps_escaped_by_a_name")
"""Where an absolute module name would put its files if names were joined to paths."""

NAMES = [f"{ESCAPE}/ESCAPED", "sub/dir", "back\\slash", "ünïcødé/ø", "plain"]
"""Module names: absolute, into a subfolder, with a backslash, unicode, and an ordinary one."""

HERE = "tests.test_output_names"
SIZE = ("--input-size", "1", "16", "16")


class Hostile(nn.Module):
    """A chain of convolutions named :data:`NAMES` (one grey input channel, as digits have)."""

    def __init__(self) -> None:
        super().__init__()
        for i, name in enumerate(NAMES):
            self.add_module(name, nn.Conv2d(1 if i == 0 else 2, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in NAMES:
            x = torch.relu(self._modules[name](x))  # type: ignore[misc]
        return x


@pytest.fixture(autouse=True)
def _nothing_escaped() -> object:
    shutil.rmtree(ESCAPE, ignore_errors=True)
    yield None
    assert not ESCAPE.exists(), "a file was written outside the output folder"


def _index(folder: Path) -> dict[str, str]:
    files: dict[str, str] = json.loads((folder / INDEX).read_text(encoding="utf-8"))["files"]
    return files


@pytest.mark.parametrize(
    "name",
    ["../x", "/abs/x", "a/b", "a\\b", "..", ".hidden", "nul\0here", "ünï", "x" * 300, ""],
)
def test_a_file_name_stays_in_its_folder(name: str, tmp_path: Path) -> None:
    file = node_files([name])[name]
    assert (tmp_path / file).resolve().parent == tmp_path.resolve()
    assert not {"/", "\\", "\0"} & set(file)
    assert not file.startswith(".")
    assert len(file.encode()) <= 200
    assert file.endswith(".png")


def test_file_names_are_unique() -> None:
    names = ["a/b", "a_b", "a\\b", "A_B", "a_b-c14cddc0", "x" * 300, "x" * 301, "index"]
    files = node_files(names)
    assert len({file.casefold() for file in files.values()} | {INDEX}) == len(names) + 1
    assert files["a_b"] == "a_b.png"  # a safe name is kept as it is


def test_maps_of_hostile_names(tmp_path: Path) -> None:
    folder = tmp_path / "maps"
    assert main(["maps", f"{HERE}:Hostile", *SIZE, "--layers", "conv", "-o", str(folder)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["maps"]
    index = _index(folder)
    assert sorted(index.values()) == sorted(NAMES)  # the module tree's names, every one
    assert sorted(p.name for p in folder.iterdir()) == sorted([*index, INDEX])
    assert index["plain.png"] == "plain"
    assert all((folder / file).stat().st_size > 0 for file in index)


def test_maps_of_hostile_names_into_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["maps", f"{HERE}:Hostile", *SIZE, "--layers", "conv", "-o", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([*_index(tmp_path), INDEX, "keep.txt"])


def test_stats_of_hostile_names(tmp_path: Path) -> None:
    folder = tmp_path / "stats"
    options = ["--data", "digits", "--topk", "2", "--batch-size", "512", "--layers", "conv"]
    assert main(["stats", f"{HERE}:Hostile", *SIZE, *options, "-o", str(folder)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["stats"]
    index = _index(folder)
    assert sorted(index.values()) == sorted(NAMES)
    assert all(file.endswith("_top.png") for file in index)
    expected = [*index, INDEX, "stats.pt", "channel_stats.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


@pytest.mark.parametrize(
    ("command", "output"),
    [
        (("filters", f"{HERE}:Hostile", "--layer", NAMES[0]), "f.png"),
        (("graph", f"{HERE}:Hostile", *SIZE), "g.dot"),
        (("report", f"{HERE}:Hostile", *SIZE), "r.html"),
    ],
)
def test_one_file_commands_write_one_file(
    command: tuple[str, ...], output: str, tmp_path: Path
) -> None:
    assert main([*command, "-o", str(tmp_path / output)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [output]
    if output != "f.png":  # the graph and the report name every node
        text = (tmp_path / output).read_text(encoding="utf-8")
        assert "ESCAPED" in text
        assert "slash" in text


def test_every_name_is_traced() -> None:
    """The oracle: these names survive tracing as the module tree has them."""
    graph = fxmaps.analyze(Hostile(), torch.randn(1, 1, 8, 8))
    assert [layer.name for layer in graph.layers("conv")] == NAMES


def test_stats_writes_all_its_files_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure after ``stats.pt`` and the top images leaves no folder and no temporary one."""
    from fxmaps.cli import commands
    from fxmaps.errors import OutputError

    def fails(*_: object, **__: object) -> None:
        raise OutputError("the disk is full", path=str(tmp_path))

    monkeypatch.setattr(commands, "plot_channel_stats", fails)
    options = ["--data", "digits", "--topk", "2", "--batch-size", "512", "--layers", "conv"]
    code = main(["stats", f"{HERE}:Hostile", *SIZE, *options, "-o", str(tmp_path / "stats")])
    assert code == 2
    assert "the disk is full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
