"""Every script in examples/ runs and prints what it promises."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

import fxmaps
from tests.test_stats import expected_top

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def test_resnet50_census(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "resnet50_census.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "{'conv': 49, 'downsample': 4, 'linear': 1, 'sequential': 4, 'residual': 16}" in out
    assert out.count("projection shortcut") == 4


def test_untraceable_model(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "untraceable_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(r"^router.bright +conv \(eager\) +Conv2d +1×16×32×32 +2,320", out, re.M)
    assert "router.dark" not in out.split("eager:")[0]  # the branch not taken has no node
    assert "Eager (ran as Python): router (Router)" in out
    assert "eager: [('router', 'TraceError:" in out
    # the boolean `router.gt` (x.mean() > 0) is no map: patterns select float tensors
    assert "router maps: {'router.mean': (), 'router.bright': (1, 16, 32, 32)}" in out
    assert "fxmaps could not trace into 1 module(s) of Net" in out
    assert "opaque without an input: ['router']" in out


def example(name: str) -> dict[str, Any]:
    """The example's module namespace, without running its ``main``."""
    return runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_vgg16_maps_draws_every_conv_layer(tmp_path: Path) -> None:
    written = example("vgg16_maps.py")["vgg16_maps"](tmp_path)
    convs = [layer.name for layer in fxmaps.analyze(torchvision.models.vgg16()).layers("conv")]
    assert len(convs) == 13
    assert [p.name for p in written] == [f"{name}.png" for name in convs] + ["overview.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for path in written:
        width, height = png_size(path)
        assert min(width, height) > 200


def test_first_layer_filters(tmp_path: Path) -> None:
    written = example("first_layer_filters.py")["first_layer_filters"](tmp_path, "resnet18")
    assert [p.name for p in written] == [
        "resnet18_conv1_filters.png",
        "resnet18_layer1.0.conv2_filters.png",
    ]
    for path in written:
        png_size(path)


def test_digits_simplecnn_learns(tmp_path: Path) -> None:
    accuracy, written = example("digits_simplecnn.py")["digits_simplecnn"](tmp_path, epochs=8)
    assert accuracy > 0.9  # 96.7% with the example's seed; chance is 10%
    assert [p.name for p in written] == [
        "simplecnn_conv1_filters.png",
        "simplecnn_conv1_maps.png",
        "simplecnn_conv2_maps.png",
    ]
    for path in written:
        png_size(path)


def test_digits_top_images(tmp_path: Path) -> None:
    stats, written = example("digits_top_images.py")["digits_top_images"](tmp_path, epochs=3)
    assert [p.name for p in written] == [
        "conv1_top_digits.png",
        "conv2_top_digits.png",
        "channel_stats.png",
        "digits_stats.pt",
    ]
    for path in written[:3]:
        png_size(path)
    assert stats.samples == 1797
    images = example("digits_simplecnn.py")["digits"]()[0]
    maps = fxmaps.extract(stats.graph, images, layers=["conv1", "conv2"])
    for name in ("conv1", "conv2"):
        scores = maps[name].double().flatten(2).amax(dim=2)
        assert torch.equal(stats[name].top_indices, expected_top(scores, 9))


def test_transformers_bert(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip(
        "transformers", reason="transformers is a test extra: pip install fxmaps[test]"
    )
    runpy.run_path(str(EXAMPLES / "transformers_bert.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "<ModelGraph of BertModel: 71 nodes, conv=0, downsample=0, linear=13" in out
    assert "ran as Python: ['BertModel (BertModel)', 'embeddings (BertEmbeddings)'" in out
    assert "first linear: encoder.layer.0.attention.self.query (2, 12, 32)" in out
    assert "'encoder.layer.1.output.dense': (2, 12, 32)" in out


def test_every_example_is_tested() -> None:
    tested = {
        "transformers_bert.py",
        "resnet50_census.py",
        "untraceable_model.py",
        "vgg16_maps.py",
        "first_layer_filters.py",
        "digits_simplecnn.py",
        "digits_top_images.py",
        "cam_digits.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} - {"__init__.py"} == tested


@pytest.mark.parametrize(
    ("script", "command"),
    [
        ("first_layer_filters.py", ["filters", "resnet18", "-o", "{tmp}/f.png"]),
        ("vgg16_maps.py", ["maps", "vgg16", "-o", "{tmp}/maps"]),
    ],
)
def test_examples_fail_offline_with_the_line_the_command_prints(
    tmp_path: Path, script: str, command: list[str]
) -> None:
    """``--weights DEFAULT`` where nothing can be downloaded (a proxy that refuses every
    connection, an empty weights cache): one line, exit code 2, as ``fxmaps`` does."""
    import os
    import subprocess
    import sys

    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.update(https_proxy=closed, HTTPS_PROXY=closed, http_proxy=closed, HTTP_PROXY=closed)
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    argv = [part.format(tmp=tmp_path) for part in command]
    runs = [
        [sys.executable, str(EXAMPLES / script), "--weights", "DEFAULT", "-o", str(tmp_path / "x")],
        [sys.executable, "-m", "fxmaps", *argv, "--weights", "DEFAULT"],
    ]
    done = [subprocess.run(r, env=env, capture_output=True, text=True, timeout=300) for r in runs]
    lines = [d.stderr.strip().splitlines() for d in done]
    for finished, said in zip(done, lines, strict=True):
        assert finished.returncode == 2, finished.stderr
        assert said[-1].startswith("fxmaps: error: cannot build torchvision model"), said
        assert "Traceback" not in finished.stderr
        assert "(downloading weights needs internet access)" in said[-1]
    assert lines[0][-1] == lines[1][-1]


def test_cam_digits_explains_each_digit(tmp_path: Path) -> None:
    accuracy, results, path = example("cam_digits.py")["cam_digits"](tmp_path, epochs=8)
    assert accuracy > 0.9
    for result in results:
        assert list(result.targets) == list(range(10))
        assert tuple(result.maps.shape) == (10, 28, 28)
    assert [r.layer for r in results] == ["pool_1", "relu_1"]
    width, height = png_size(path)
    assert width > 1000
    assert height > 1000
