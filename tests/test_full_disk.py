"""A full disk: one ``OutputError`` naming the path and "no space left", nothing half-written.

The limits are real, not mocks: ``RLIMIT_FSIZE`` in a child process (a write past it fails
with EFBIG once SIGXFSZ is ignored), and a small tmpfs where this machine lets the tests
mount one (ENOSPC). Sizes come from the same files written without a limit.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import fxmaps
from fxmaps.files import no_space

ROOT = Path(fxmaps.__file__).resolve().parent.parent

SMALL = """
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))
"""


def _small(tmp_path: Path) -> tuple[str, Path]:
    """The model spec of ``Small`` and a folder of four 32x32 photos (outside any limit)."""
    from PIL import Image

    (tmp_path / "small.py").write_text(SMALL)
    data = tmp_path / "data"
    data.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(data / f"{i}.png")
    return f"{tmp_path / 'small.py'}:Small", data


def _command(args: list[str], *, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fxmaps ARGS`` with this checkout, under a file-size limit of ``limit``."""

    def limited() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fxmaps", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
    )


def _error_line(stderr: str) -> str:
    """The one line the command printed, after its progress bars cleared theirs."""
    shown = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n")]
    lines = [line for line in shown if line.strip() and "%|" not in line]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (errno.ENOSPC, "No space left on device (ENOSPC)"),
        (errno.EDQUOT, "no space left: Disk quota exceeded (EDQUOT)"),
        (errno.EFBIG, "no space left: File too large, over the file-size limit (EFBIG)"),
    ],
)
def test_full_disk_errors_are_recognised_in_every_form(number: int, words: str) -> None:
    system = OSError(number, os.strerror(number))
    # torch, writing to a file object, raises its RuntimeError while the OSError is handled
    from_torch = RuntimeError("[enforce fail at inline_container.cc:671] unexpected pos")
    from_torch.__context__ = system
    rust = RuntimeError(f"Error while serializing: I/O error: {os.strerror(number)} "
                        f"(os error {number})")  # fmt: skip
    for err in (system, from_torch, rust):
        found = no_space(err, "out/maps.pt")
        assert isinstance(found, fxmaps.OutputError)
        assert found.path == "out/maps.pt"
        assert str(found).startswith(f"cannot write 'out/maps.pt': {words}")


def test_other_errors_are_not_a_full_disk() -> None:
    assert no_space(PermissionError(errno.EACCES, "Permission denied"), "x") is None
    assert no_space(RuntimeError("unexpected pos 576 vs 534"), "x") is None
    assert no_space(RuntimeError("I/O error: Permission denied (os error 13)"), "x") is None
    said = fxmaps.OutputError("cannot write 'x': no space left on the device", path="x")
    said.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert no_space(said, "y") is None  # already an OutputError: not said twice


SAVES = """
import json, resource, signal, sys, torch, fxmaps
from pathlib import Path
from torch import nn
folder = Path(sys.argv[1])
model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3))
maps = fxmaps.extract(model, torch.randn(2, 3, 40, 40))
data = torch.utils.data.TensorDataset(torch.randn(8, 3, 40, 40))
stats = fxmaps.channel_stats(model, data, layers="conv", batch_size=4, topk=2)
saves = {"maps.pt": maps.save, "maps.safetensors": maps.save, "stats.pt": stats.save}
(folder / "whole").mkdir()
sizes = {}
for name, save in saves.items():
    save(folder / "whole" / name)
    sizes[name] = (folder / "whole" / name).stat().st_size
limit = min(sizes.values()) // 2
(folder / "full").mkdir()
(folder / "full" / "maps.pt").write_bytes(b"the previous file")
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
errors = {}
for name, save in saves.items():
    try:
        save(folder / "full" / name)
    except BaseException as err:
        errors[name] = [type(err).__name__, isinstance(err, fxmaps.FxmapsError), str(err),
                        err.path if isinstance(err, fxmaps.OutputError) else None]
print(json.dumps({"sizes": sizes, "limit": limit, "errors": errors}))
"""


def test_saves_past_the_file_size_limit_leave_nothing(tmp_path: Path) -> None:
    """FeatureMaps.save (.pt, .safetensors) and ChannelStats.save past RLIMIT_FSIZE."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SAVES, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert all(size > result["limit"] for size in result["sizes"].values())
    full = tmp_path / "full"
    for name in ("maps.pt", "maps.safetensors", "stats.pt"):
        kind, ours, message, path = result["errors"][name]
        assert (kind, ours, path) == ("OutputError", True, str(full / name)), message
        assert message.startswith(f"cannot write {str(full / name)!r}: no space left"), message
        assert "EFBIG" in message
    # no partial file, no temporary one; the previous maps.pt is as it was
    assert sorted(p.name for p in full.iterdir()) == ["maps.pt"]
    assert (full / "maps.pt").read_bytes() == b"the previous file"
    fxmaps.FeatureMaps.load(tmp_path / "whole" / "maps.safetensors")  # the unlimited ones load
    fxmaps.ChannelStats.load(tmp_path / "whole" / "stats.pt")


def _stats_file_size(spec: str, data: Path, tmp_path: Path) -> int:
    """The size of ``stats.pt`` for ``Small`` on ``data``: what the command writes first."""
    from fxmaps.sources.datasets import image_dataset
    from fxmaps.sources.models import load_model

    loaded = load_model(spec)
    stats = fxmaps.channel_stats(loaded.model, image_dataset(str(data), (3, 32, 32)),
                                 layers="conv", topk=9)  # fmt: skip
    return stats.save(tmp_path / "oracle.pt").stat().st_size


def test_stats_past_the_file_size_limit_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """``stats.pt`` fits under the limit, the figures after it do not: the folder, which
    holds a file of the user's and an older ``stats.pt``, is left exactly as it was."""
    spec, data = _small(tmp_path)
    limit = 2 * _stats_file_size(spec, data, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "stats.pt").write_bytes(b"an older run")
    done = _command(["stats", spec, "--input-size", "3", "32", "32", "--data", str(data),
                     "-o", str(out)], limit=limit)  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    line = _error_line(done.stderr)
    assert line.startswith(f"fxmaps: error: cannot write '{out}/"), line
    assert "no space left: File too large, over the file-size limit (EFBIG)" in line
    assert ".fxmaps." not in line  # the file's place in the folder, not the hidden one
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "stats.pt"]
    assert (out / "stats.pt").read_bytes() == b"an older run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "oracle.pt", "out", "small.py"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test (root only; skipped where mounting is refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                           capture_output=True, text=True)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip(f"this machine does not let the tests mount a tmpfs: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _nothing_on(disk: Path) -> Callable[[], None]:
    def check() -> None:
        assert list(disk.iterdir()) == []
        assert os.statvfs(disk).f_bfree == os.statvfs(disk).f_blocks  # nothing hidden either

    return check


def test_saves_on_a_full_disk(small_disk: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.ReLU())
    maps = fxmaps.extract(model, torch.randn(1, 3, 64, 64))  # 32 x 62 x 62 floats: 492 KB
    for name in ("maps.safetensors", "maps.pt"):
        with pytest.raises(
            fxmaps.OutputError, match=r"No space left on device \(ENOSPC\)"
        ) as caught:
            maps.save(small_disk / name)
        assert caught.value.path == str(small_disk / name)
        assert str(small_disk / name) in str(caught.value)
        _nothing_on(small_disk)()


def test_stats_on_a_disk_that_fills_after_stats_pt(small_disk: Path, tmp_path: Path) -> None:
    """``stats.pt`` fits on the 64 KiB disk, the figures do not: no folder is left."""
    spec, data = _small(tmp_path)
    size = _stats_file_size(spec, data, tmp_path)
    assert size < 32 * 1024  # so it fits, and the failure comes after it
    done = _command(["stats", spec, "--input-size", "3", "32", "32", "--data", str(data),
                     "-o", str(small_disk / "stats")])  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    line = _error_line(done.stderr)
    assert line.startswith(f"fxmaps: error: cannot write '{small_disk}/stats/"), line
    assert "No space left on device (ENOSPC)" in line
    _nothing_on(small_disk)()


def test_maps_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    spec, _ = _small(tmp_path)
    done = _command(["maps", spec, "--input-size", "3", "64", "64",
                     "-o", str(small_disk / "maps")])  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    line = _error_line(done.stderr)
    assert line.startswith(f"fxmaps: error: cannot write '{small_disk}/maps"), line
    assert "No space left on device (ENOSPC)" in line
    _nothing_on(small_disk)()
