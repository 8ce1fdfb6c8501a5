"""The command line: summary for every kind of MODEL, weights files, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from fxmaps.cli import main
from tests import models as toy

ROOT = Path(__file__).parent.parent
SUBCOMMANDS = ("summary", "graph", "maps", "filters", "report", "bench", "stats", "cam", "demo")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_of_a_torchvision_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "resnet18", "--input-size", "3", "64", "64")
    assert code == 0
    assert "layer2.0.downsample.0  downsample" in out
    assert "Layers: conv 17, downsample 3, linear 1, sequential 4, residual 8" in out
    assert "1×512×2×2" in out


def test_summary_uses_the_models_own_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "inception_v3", "--kinds", "linear")
    assert code == 0
    assert "1×1000" in out


def test_summary_of_a_file_model(capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{ROOT / 'tests' / 'models.py'}:CifarResNet"
    code, out, _ = run(
        capsys, "summary", spec, "--input-size", "3", "32", "32", "--kinds", "downsample"
    )
    assert code == 0
    assert "layer2.0.shortcut.0" in out
    assert "layer3.0.shortcut.0" in out


def test_summary_of_a_module_factory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "tests.models:Conv1dNet", "--input-size", "2", "64")
    assert code == 0
    assert "2×8×64" not in out
    assert "1×8×64" in out


def test_weights_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = toy.CifarResNet()
    with torch.no_grad():
        model.linear.bias.fill_(0.5)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pt")
    spec = "tests.models:CifarResNet"
    code, out, _ = run(capsys, "summary", spec, "--weights", str(tmp_path / "w.pt"), "--no-input")
    assert code == 0
    assert "layer1.0.conv1" in out


def test_trace_failure_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "summary", "tests.models:RootDataDependent", "--no-input")
    assert code == 2
    assert "if y.mean() > 0" in err
    assert "pass an example input" in err
    assert "Traceback" not in err
    # With an input the model runs, and what torch.fx could not follow is captured.
    code, out, _ = run(
        capsys, "summary", "tests.models:RootDataDependent", "--input-size", "3", "8", "8"
    )
    assert code == 0
    assert "Eager (ran as Python): RootDataDependent" in out


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception, match="is not a torchvision model"):
        main(["summary", "resnet1", "--debug"])


def test_timm_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm", reason="timm is an optional extra")
    code, out, _ = run(capsys, "summary", "timm:resnet18", "--no-input", "--kinds", "downsample")
    assert code == 0
    assert "layer2.0.downsample.0" in out


def test_python_dash_m_and_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fxmaps", "summary", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert "usage: fxmaps summary" in result.stdout
    assert "examples:" in result.stdout


def test_bench_prints_the_table_and_writes_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "bench.json"
    args = ("bench", "tests.models:CifarResNet", "--input-size", "3", "16", "16", "--batch", "2")
    code, out, _ = run(
        capsys, *args, "--repeat", "2", "--layers", "conv", "linear", "--json", str(out_file)
    )
    assert code == 0
    for row in ("| plain forward |", "| fxmaps        |", "| forward hooks |"):
        assert row in out
    assert "8 maps (8 reachable by hooks)" in out
    data = json.loads(out_file.read_text())
    assert set(data["timings"]) == {"plain_forward", "fxmaps", "forward_hooks"}
    assert len(data["timings"]["fxmaps"]["seconds"]) == 2
    assert len(data["ratio"]["rounds"]) == 2
    assert data["input_shapes"] == [[2, 3, 16, 16]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_bench_on_a_missing_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "bench", "tests.models:CifarResNet", "--device", "cuda")
    assert code == 2
    assert "no CUDA device here; use --device cpu" in err


def help_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str
) -> str:
    """What ``fxmaps ARGV --help`` prints, wrapped at 100 columns whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit, match=r"^0$"):
        main([*argv, "--help"])
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_help_golden_lists_every_command(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    golden: Callable[[str, str], None],
) -> None:
    out = help_text(capsys, monkeypatch)
    assert out.startswith("usage: fxmaps ")
    listed = re.findall(r"^    (\w+) ", out.split("\ncommands:\n", 1)[1], re.MULTILINE)
    assert tuple(listed) == SUBCOMMANDS
    golden("help/fxmaps.txt", out)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_command_help_golden(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    golden: Callable[[str, str], None],
    command: str,
) -> None:
    out = help_text(capsys, monkeypatch, command)
    assert out.startswith(f"usage: fxmaps {command} ")
    golden(f"help/{command}.txt", out)


@pytest.mark.parametrize("terminal", [False, True])
def test_bench_shows_its_rounds_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    import inspect

    from fxmaps.bench.extraction import benchmark_extraction

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    args = ("bench", "tests.models:CifarResNet", "--input-size", "3", "16", "16", "--batch", "2")
    code, out, err = run(capsys, *args, "--repeat", "3", "--layers", "conv")
    assert code == 0
    assert "| fxmaps        |" in out
    assert "bench: round" not in out
    warmup = inspect.signature(benchmark_extraction).parameters["warmup"].default
    total = warmup + 3
    shown = re.findall(r"\rbench: round (\d+) of (\d+)", err)
    if terminal:
        assert shown == [(str(done), str(total)) for done in range(1, total + 1)]
        assert err.endswith("\r\033[K")  # the line is cleared before the table
    else:
        assert shown == []
        assert "\r" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit, match=r"^0$"):
        main(["--version"])
    assert capsys.readouterr().out == f"fxmaps {version('fxmaps')}\n"
