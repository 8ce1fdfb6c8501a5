"""Command-line options of ``maps`` and all commands: --seed, --channels/--reduce/--dtype,
progress bars only on a terminal, and files written with the umask's permissions."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fxmaps
from fxmaps.cli import commands, main

ROOT = Path(__file__).parent.parent
MODEL = ("tests.models:CifarResNet", "--input-size", "3", "16", "16")


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_seed_makes_two_runs_of_random_weights_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        argv = ["maps", *MODEL, "--layers", "conv", "--seed", seed, "-o", str(tmp_path / name)]
        assert main(argv) == 0
        runs[name] = digests(tmp_path / name)
    capsys.readouterr()
    assert len(runs["a"]) > 2  # every conv's PNG and the index
    assert runs["a"] == runs["b"]
    png = [name for name in runs["a"] if name.endswith(".png")]
    assert all(runs["a"][name] != runs["c"][name] for name in png)  # another seed, other weights


def captured_maps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *options: str
) -> fxmaps.FeatureMaps:
    """The maps the ``maps`` command would draw, with ``options``."""
    seen: list[fxmaps.FeatureMaps] = []
    monkeypatch.setattr(commands, "_draw_maps", lambda maps, *_, **__: seen.append(maps))
    folder = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    argv = ["maps", *MODEL, "--layers", "conv1", "layer2.0.conv1", "--seed", "3", "-o", str(folder)]
    assert main([*argv, *options]) == 0
    return seen[0]


def test_maps_takes_channels_reduce_and_dtype_as_extract_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = captured_maps(monkeypatch, tmp_path)
    sliced = captured_maps(monkeypatch, tmp_path, "--channels", "2:6")
    picked = captured_maps(monkeypatch, tmp_path, "--channels", "5", "0", "3")
    top = captured_maps(monkeypatch, tmp_path, "--channels", "top:2")
    mean = captured_maps(monkeypatch, tmp_path, "--reduce", "mean")
    space = captured_maps(monkeypatch, tmp_path, "--reduce", "max:space")
    half = captured_maps(monkeypatch, tmp_path, "--dtype", "float16")
    capsys.readouterr()
    for name, tensor in full.items():
        torch.testing.assert_close(sliced[name], tensor[:, 2:6])
        torch.testing.assert_close(picked[name], tensor[:, [5, 0, 3]])
        kept = top.channels(name)
        assert kept is not None
        assert set(kept.tolist()) == set(tensor.mean(dim=(0, 2, 3)).topk(2).indices.tolist())
        torch.testing.assert_close(mean[name], tensor.mean(dim=1, keepdim=True))
        torch.testing.assert_close(space[name], tensor.amax(dim=(2, 3)))
        assert half[name].dtype == torch.float16
        torch.testing.assert_close(half[name], tensor.half())


def test_maps_rejects_a_bad_channel_selection(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["maps", *MODEL, "--channels", "first", "-o", str(tmp_path / "maps")]) == 2
    assert "channels='first' is not valid" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bars_only_on_a_terminal(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    terminal: bool,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert main(["maps", *MODEL, "-o", str(tmp_path / "maps")]) == 0
    err = capsys.readouterr().err
    assert ("\r" in err and "drawing maps" in err) is terminal


def test_no_progress_frames_in_a_log_file(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        subprocess.run(
            [sys.executable, "-m", "fxmaps", "maps", *MODEL, "-o", str(tmp_path / "maps")],
            cwd=ROOT, stderr=stderr, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
    assert "\r" not in log.read_text()
    assert len(list((tmp_path / "maps").iterdir())) > 2


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_get_the_umasks_permissions(tmp_path: Path, umask: int) -> None:
    maps = fxmaps.extract(torch.nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8))
    old = os.umask(umask)
    try:
        for name in ("maps.safetensors", "maps.pt"):
            maps.save(tmp_path / name)
        assert main(["maps", *MODEL, "-o", str(tmp_path / "drawn")]) == 0
    finally:
        os.umask(old)
    written = [tmp_path / "maps.safetensors", tmp_path / "maps.pt"]
    written += list((tmp_path / "drawn").iterdir())
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o666 & ~umask}
