"""channel_stats: one streaming pass against statistics of all maps at once, and torchrun."""

from __future__ import annotations

import fcntl
import json
import math
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import fxmaps
from fxmaps.stats.channels import ChannelStats, channel_stats
from tests.models import DEAD_CHANNEL_SAMPLES, batchnorm_cnn, dead_channel_cnn

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = DEAD_CHANNEL_SAMPLES  # uneven: 19 + 18 on two ranks, and a short last batch
LAYERS = ["0", "1", "3", "6"]  # conv, its ReLU, the second conv, the linear


def all_maps(model: nn.Module, images: torch.Tensor) -> fxmaps.FeatureMaps:
    return fxmaps.extract(model, images, layers=LAYERS)


def expected_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Per channel, the indices of the k highest scores, lower index first on ties."""
    rows = []
    for channel in scores.T.tolist():
        ranked = sorted(range(len(channel)), key=lambda i: (-channel[i], i))
        rows.append(ranked[:k])
    return torch.tensor(rows)


@pytest.mark.parametrize("batch_size", [5, 64])
def test_streamed_statistics_equal_those_of_all_maps(batch_size: int) -> None:
    model, data = dead_channel_cnn()
    stats = channel_stats(model, data, layers=LAYERS, batch_size=batch_size, topk=4)
    assert list(stats) == LAYERS
    assert stats.samples == SAMPLES
    maps = all_maps(model, data.tensors[0])
    for name in LAYERS:
        full = maps[name].double()
        per_channel = full.transpose(0, 1).flatten(1)  # (C, N * positions)
        layer = stats[name]
        # Batches are reduced in float32: compare at float32 resolution.
        torch.testing.assert_close(layer.mean, per_channel.mean(dim=1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            layer.std, per_channel.std(dim=1, correction=0), rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(layer.max, per_channel.amax(dim=1))
        torch.testing.assert_close(layer.positive, (per_channel > 0).double().mean(dim=1))
        scores = full.flatten(2).amax(dim=2) if full.dim() > 2 else full
        assert torch.equal(layer.top_indices, expected_top(scores, 4))
        torch.testing.assert_close(layer.top_scores, scores.T.gather(1, layer.top_indices))


def test_mean_scores_and_bare_tensor_datasets() -> None:
    model, data = dead_channel_cnn()
    images = data.tensors[0]

    class Bare(Dataset[torch.Tensor]):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int) -> torch.Tensor:
            return images[index]

    stats = channel_stats(model, Bare(), layers="conv", score="mean", topk=3, progress=False)
    scores = all_maps(model, images)["3"].double().flatten(2).mean(dim=2)
    assert torch.equal(stats["3"].top_indices, expected_top(scores, 3))


def test_float64_models_match_the_oracle_too() -> None:
    """float64 maps take the stable-sort path of the top-k; statistics stay exact."""
    model, data = dead_channel_cnn()
    model = model.double()
    images = data.tensors[0].double()
    stats = channel_stats(model, TensorDataset(images), layers=LAYERS, batch_size=8, topk=5)
    maps = all_maps(model, images)
    for name in LAYERS:
        full = maps[name]
        per_channel = full.transpose(0, 1).flatten(1)
        torch.testing.assert_close(stats[name].mean, per_channel.mean(dim=1))
        torch.testing.assert_close(stats[name].std, per_channel.std(dim=1, correction=0))
        scores = full.flatten(2).amax(dim=2) if full.dim() > 2 else full
        assert torch.equal(stats[name].top_indices, expected_top(scores, 5))
        assert torch.equal(stats[name].top_scores, scores.T.gather(1, stats[name].top_indices))


def test_top_k_ranks_special_values_and_ties_like_a_stable_sort() -> None:
    """The int64 keys of float32 scores order as torch.sort does: NaN first, -0.0 == 0.0,
    subnormals and infinities in place, ties to the lower index; batch by batch."""
    from fxmaps.stats.running import TopK

    special = [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 2.5, -2.5, 3e38, -3e38]
    special += [float("inf"), float("-inf"), float("nan"), -float("nan")]
    generator = torch.Generator().manual_seed(0)
    choice = torch.randint(len(special), (6, 50), generator=generator)
    scores = torch.tensor(special, dtype=torch.float32)[choice]  # many ties
    top = TopK(6, 7)
    for start in range(0, 50, 8):
        top.add(scores[:, start : start + 8], torch.arange(start, min(start + 8, 50)))
    got_scores, got_indices = top.result()
    stable = torch.sort(scores.double(), dim=1, descending=True, stable=True)
    assert torch.equal(got_indices, stable.indices[:, :7])
    torch.testing.assert_close(got_scores, stable.values[:, :7], equal_nan=True)


def test_nodes_side_by_side_with_means_far_above_their_spread() -> None:
    """One running state holds several nodes' channels; a channel whose mean dwarfs its
    spread (its variance summed again, centred) may be in any of them."""
    from fxmaps.stats.running import Running, Scratch

    torch.manual_seed(0)
    first = torch.randn(10, 3, 4, 4)
    second = torch.randn(10, 4, 2, 2)
    second[:, 2] += 50.0
    state, scratch = Running(7, 3), Scratch()
    for rows in (slice(0, 6), slice(6, 10)):
        indices = torch.arange(10)[rows]
        state.update([first[rows], second[rows]], indices, "max", scratch)
    for part, maps in zip(state.split([3, 4]), (first, second), strict=True):
        per_channel = maps.double().transpose(0, 1).flatten(1)
        torch.testing.assert_close(part.mean, per_channel.mean(dim=1))
        std = (part.m2 / part.count).sqrt()
        torch.testing.assert_close(std, per_channel.std(dim=1, correction=0), rtol=1e-5, atol=0)
        torch.testing.assert_close(part.max, per_channel.amax(dim=1))
        scores, indices = part.top.result()
        peaks = maps.flatten(2).amax(dim=2)
        assert torch.equal(indices, expected_top(peaks, 3))
        assert torch.equal(scores, peaks.T.gather(1, indices).double())


def test_progress_writes_nothing_where_stderr_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log (a CI job, ``2> log``) gets no progress frames from the library itself."""
    model, data = dead_channel_cnn()
    log = tmp_path / "stderr.log"
    with log.open("w") as stream, monkeypatch.context() as patched:
        assert not stream.isatty()
        patched.setattr(sys, "stderr", stream)
        stats = channel_stats(model, data, layers=["1"], batch_size=5, progress=True)
    assert stats.samples == SAMPLES
    assert log.read_text() == ""


def test_progress_draws_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = dead_channel_cnn()
    leader, follower = pty.openpty()
    size = struct.pack("HHHH", 24, 80, 0, 0)  # rows, columns: a new pty has 0, and tqdm
    fcntl.ioctl(follower, termios.TIOCSWINSZ, size)  # draws nothing 0 columns wide
    try:
        with os.fdopen(follower, "w") as terminal, monkeypatch.context() as patched:
            assert terminal.isatty()
            patched.setattr(sys, "stderr", terminal)
            channel_stats(model, data, layers=["1"], batch_size=5, progress=True)
            terminal.flush()
            shown = read_waiting(leader)  # before closing: Linux drops what is unread then
    finally:
        os.close(leader)
    batches = math.ceil(SAMPLES / 5)
    assert "channel stats" in shown
    assert f"{batches}/{batches}" in shown  # the finished bar
    assert "\r" in shown  # frames drawn over each other on one line


def read_waiting(leader: int) -> str:
    """What the other side of a pty wrote and nobody read yet."""
    chunks = []
    while select.select([leader], [], [], 0.5)[0]:
        chunks.append(os.read(leader, 4096))
    return b"".join(chunks).decode()


def test_dead_channels_are_listed() -> None:
    model, data = dead_channel_cnn()
    stats = channel_stats(model, data, layers=["1"], progress=False)
    assert stats["1"].dead == [2]
    assert stats.dead() == {"1": [2]}
    assert stats["1"].positive[2] == 0


def test_fewer_samples_than_k() -> None:
    model, data = dead_channel_cnn()
    few = torch.utils.data.Subset(data, range(3))
    stats = channel_stats(model, few, layers=["3"], topk=9, progress=False)
    assert stats["3"].top_indices.shape == (8, 3)
    assert sorted(stats["3"].top_indices[0].tolist()) == [0, 1, 2]


def test_save_and_load(tmp_path: Path) -> None:
    model, data = dead_channel_cnn()
    stats = channel_stats(model, data, layers=LAYERS, topk=2, progress=False)
    path = stats.save(tmp_path / "stats.pt")
    loaded = ChannelStats.load(path)
    assert (loaded.samples, loaded.topk, loaded.score, list(loaded)) == (SAMPLES, 2, "max", LAYERS)
    for name in LAYERS:
        for field in ("mean", "std", "max", "positive", "top_indices", "top_scores"):
            assert torch.equal(getattr(loaded[name], field), getattr(stats[name], field))


WORKER = """
import sys
import torch.distributed as dist
from fxmaps.stats.channels import channel_stats
from tests.models import dead_channel_cnn
from tests.test_stats import LAYERS

model, data = dead_channel_cnn()
stats = channel_stats(model, data, layers=LAYERS, batch_size=4, topk=4, progress=False)
assert dist.is_initialized() and dist.get_world_size() == 2
if dist.get_rank() == 0:
    stats.save(sys.argv[1])

# A model with BatchNorm, left in training mode: its eval-mode statistics, as alone.
from tests.models import batchnorm_cnn

norm_model, norm_data = batchnorm_cnn()
norm_stats = channel_stats(norm_model, norm_data, layers=["1", "4"], batch_size=4, progress=False)
assert norm_model.training
if dist.get_rank() == 0:
    norm_stats.save(sys.argv[2])

# Different weights on the two ranks are refused, until rank 0's are shared.
import torch
from fxmaps.errors import InputError
from fxmaps.stats.world import share_weights

torch.manual_seed(dist.get_rank())
other = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3))
try:
    channel_stats(other, data, layers="conv", progress=False)
    raise SystemExit("differing weights were merged")
except InputError as err:
    assert "weights differ between the processes" in str(err), err
assert share_weights(other) == dist.get_rank()
channel_stats(other, data, layers="conv", progress=False)
dist.destroy_process_group()
"""


def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(WORKER))
    out = tmp_path / "merged.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(worker), str(out), str(tmp_path / "norm.pt")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = ChannelStats.load(out)
    model, data = dead_channel_cnn()
    single = channel_stats(model, data, layers=LAYERS, batch_size=4, topk=4, progress=False)
    assert merged.samples == single.samples == SAMPLES
    for name in LAYERS:
        a, b = merged[name], single[name]
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.std, b.std, rtol=1e-5, atol=1e-6)
        assert torch.equal(a.max, b.max)
        assert torch.equal(a.positive, b.positive)  # counts: padding duplicates not counted
        assert torch.equal(a.top_indices, b.top_indices)
        torch.testing.assert_close(a.top_scores, b.top_scores)
    norm_model, norm_data = batchnorm_cnn()
    alone = channel_stats(norm_model, norm_data, layers=["1", "4"], batch_size=37, progress=False)
    shared = ChannelStats.load(tmp_path / "norm.pt")
    for name in ("1", "4"):
        torch.testing.assert_close(shared[name].mean, alone[name].mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(shared[name].std, alone[name].std, rtol=1e-5, atol=1e-6)
        assert torch.equal(shared[name].top_indices, alone[name].top_indices)


SIMPLE_CNN = """
import torch
import torch.nn.functional as F
from torch import nn


class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same weights in the command and in the test's oracle
        self.conv1 = nn.Conv2d(1, 4, 5)
        self.bn1 = nn.BatchNorm2d(4)  # running statistics far from a batch's own
        self.conv2 = nn.Conv2d(4, 6, 5)
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-2.0, 2.0)
            self.bn1.running_var.uniform_(0.25, 4.0)
            self.bn1.bias.uniform_(-1.0, 1.0)

    def forward(self, x):
        return self.conv2(F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2))
"""


def test_the_stats_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fxmaps.cli import main
    from fxmaps.sources.datasets import Digits

    (tmp_path / "net.py").write_text(SIMPLE_CNN)
    out = tmp_path / "stats"
    spec = f"{tmp_path / 'net.py'}:SimpleCNN"
    argv = ["stats", spec, "--input-size", "1", "28", "28", "--data", "digits", "-o", str(out)]
    assert main([*argv, "--topk", "3", "--batch-size", "500"]) == 0
    assert "over 1797 samples" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    drawn = ["conv1_top.png", "conv2_top.png"]
    assert names == ["channel_stats.png", *drawn, "index.json", "stats.pt"]
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert index == {"files": dict(zip(drawn, ["conv1", "conv2"], strict=True))}
    saved = ChannelStats.load(out / "stats.pt")
    assert saved.topk == 3
    model = fxmaps.sources.load_model(spec).model
    digits = Digits((1, 28, 28))
    maps = fxmaps.extract(model, digits.images, layers=["conv2"])
    scores = maps["conv2"].double().flatten(2).amax(dim=2)
    assert torch.equal(saved["conv2"].top_indices, expected_top(scores, 3))
    assert main(["stats", spec, "--data", str(tmp_path / "none"), "-o", str(out)]) == 2
    assert "is neither 'digits' nor a folder" in capsys.readouterr().err
