"""Output files: written whole or not at all, with the user's permissions, in existing folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import fxmaps
from fxmaps.files import atomic_path, output_file, output_folder


def write_then_fail(target: Path, content: bytes) -> None:
    with atomic_path(target) as temporary:
        temporary.write_bytes(content)
        raise RuntimeError("encoder broke")


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    with pytest.raises(RuntimeError, match=r"encoder broke"):
        write_then_fail(target, b"half a fi")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match=r"encoder broke"):
        write_then_fail(target, b"new, partial")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_a_finished_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.suffix == ".png"
        assert not temporary.exists()  # the writer creates it
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_written_files_get_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "report.html") as temporary:
            temporary.write_text("<html></html>")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644


def test_missing_folders_are_output_errors(tmp_path: Path) -> None:
    file = tmp_path / "nowhere" / "a.svg"
    with pytest.raises(
        fxmaps.OutputError, match=r"cannot write .*a\.svg.*folder .*nowhere.* does"
    ) as excinfo:
        output_file(file)
    assert excinfo.value.path == str(file)
    folder = tmp_path / "nowhere" / "inner"
    with pytest.raises(
        fxmaps.OutputError, match=r"cannot create .*inner.*folder .*nowhere.* does"
    ) as excinfo:
        output_folder(folder)
    assert excinfo.value.path == str(folder)
    assert list(tmp_path.iterdir()) == []
    error = fxmaps.OutputError("x")
    assert isinstance(error, fxmaps.FxmapsError)
    assert isinstance(error, OSError)


def test_output_folder_is_created_once(tmp_path: Path) -> None:
    made = output_folder(tmp_path / "maps")
    assert made.is_dir()
    assert output_folder(tmp_path / "maps") == made  # an existing folder is fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_folders_are_output_errors(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(
            fxmaps.OutputError, match=r"folder .*locked.* is not writable"
        ) as excinfo:
            output_file(locked / "a.svg")
        assert excinfo.value.path == str(locked / "a.svg")
    finally:
        locked.chmod(0o755)
