"""``fxmaps stats`` under torchrun: two processes save what one process saves (the model has
BatchNorm: in eval mode, the default, its statistics do not depend on the split)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fxmaps.stats.channels import ChannelStats
from tests.test_stats import ROOT, SIMPLE_CNN

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch has no torch.distributed"
)

# 1797 digits: 899 and 898 on two ranks, so rank 1 gets one padding sample from the
# DistributedSampler; batches of 128 leave a short last batch on both.
OPTIONS = ["--input-size", "1", "28", "28", "--data", "digits", "--topk", "4"]
OPTIONS += ["--batch-size", "128", "--layers", "conv1", "bn1", "conv2"]


def test_two_processes_save_the_statistics_of_one(tmp_path: Path) -> None:
    from fxmaps.cli import main

    (tmp_path / "net.py").write_text(SIMPLE_CNN)
    spec = f"{tmp_path / 'net.py'}:SimpleCNN"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "fxmaps", "stats", spec, *OPTIONS]
    command += ["-o", str(tmp_path / "two")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "over 1797 samples" in done.stdout  # printed by rank 0 only, once
    assert done.stdout.count("wrote") == 1
    assert main(["stats", spec, *OPTIONS, "-o", str(tmp_path / "one")]) == 0

    two = ChannelStats.load(tmp_path / "two" / "stats.pt")
    one = ChannelStats.load(tmp_path / "one" / "stats.pt")
    assert (two.samples, two.topk, list(two)) == (one.samples, one.topk, list(one))
    assert one.samples == 1797
    for name in one:
        a, b = two[name], one[name]
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.std, b.std, rtol=1e-5, atol=1e-6)
        assert torch.equal(a.max, b.max)
        assert torch.equal(a.positive, b.positive)  # the padding sample is not counted
        assert torch.equal(a.top_indices, b.top_indices)
        assert torch.equal(a.top_scores, b.top_scores)
    drawn = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert drawn == sorted(p.name for p in (tmp_path / "one").iterdir())
