"""benchmark_extraction: what it reports (never how fast: timings do not go into tests)."""

from __future__ import annotations

from pathlib import Path

import torch

import fxmaps
from fxmaps.bench.extraction import FORWARD, FXMAPS, HOOKS
from tests import models as toy


def test_report_structure_and_memory() -> None:
    model = toy.FunctionalNet()
    chosen = ["conv2d", "conv_1", "linear"]
    result = fxmaps.benchmark_extraction(
        model, torch.randn(2, 3, 8, 8), layers=chosen, repeat=2, warmup=1
    )
    assert list(result.timings) == [FORWARD, FXMAPS, HOOKS]
    assert all(len(t.seconds) == 2 for t in result.timings.values())
    assert result.ratio(FORWARD) == 1.0
    assert (result.layers, result.hooked) == (3, 1)  # functional conv and linear: no hooks
    expected = fxmaps.extract(model, torch.randn(2, 3, 8, 8), layers=chosen)
    assert result.retained_bytes == expected.nbytes
    table = result.table()
    assert "3 maps (1 reachable by hooks)" in table
    assert "| fxmaps" in table
    if Path("/proc/self/statm").exists():  # the CPU peak is sampled from Linux's /proc
        assert all(t.peak_bytes is not None for t in result.timings.values())


def test_controls_are_passed_to_the_extractor() -> None:
    result = fxmaps.benchmark_extraction(
        toy.CifarResNet(), torch.randn(2, 3, 16, 16), layers="conv", repeat=1, warmup=0,
        memory=False, reduce="mean",
    )  # fmt: skip
    full = fxmaps.extract(toy.CifarResNet(), torch.randn(2, 3, 16, 16), layers="conv")
    assert result.retained_bytes < full.nbytes
    assert result.timings[FXMAPS].peak_bytes is None
