"""Output files: written whole or not at all, with the user's permissions, in existing folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import fxmaps
from fxmaps.cli.signals import Terminated
from fxmaps.files import atomic_path, file_set, output_file, output_folder


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


def _fill(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        (folder / name).write_bytes(content)


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() if p.is_file() else b"<folder>" for p in folder.iterdir()}


def test_a_file_set_makes_a_new_folder_whole(tmp_path: Path) -> None:
    with file_set(tmp_path / "maps") as filling:
        assert filling.parent == tmp_path
        assert filling.name.startswith(".maps.")
        _fill(filling, {"a.png": b"a", "b.png": b"b"})
        assert not (tmp_path / "maps").exists()  # not before the block ends
    assert _listing(tmp_path / "maps") == {"a.png": b"a", "b.png": b"b"}
    assert [p.name for p in tmp_path.iterdir()] == ["maps"]


def test_a_file_set_moves_into_an_existing_folder_at_the_end(tmp_path: Path) -> None:
    """Files of the same name are replaced, the folder's other files are kept."""
    folder = tmp_path / "maps"
    folder.mkdir()
    _fill(folder, {"a.png": b"old a", "notes.txt": b"mine"})
    with file_set(folder) as filling:
        assert filling.parent == folder
        assert filling.name.startswith(".fxmaps.")
        _fill(filling, {"a.png": b"new a", "b.png": b"new b"})
        assert _listing(folder) == {
            "a.png": b"old a",
            "notes.txt": b"mine",
            filling.name: b"<folder>",
        }
    assert _listing(folder) == {"a.png": b"new a", "b.png": b"new b", "notes.txt": b"mine"}


@pytest.mark.parametrize("failure", [RuntimeError("drawing broke"), Terminated()])
@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_file_set_leaves_the_folder_as_it_was(
    tmp_path: Path, failure: BaseException, existing: bool
) -> None:
    """An error, or SIGTERM as the command line raises it, halfway through the files."""
    folder = tmp_path / "maps"
    if existing:
        folder.mkdir()
        _fill(folder, {"a.png": b"old a", "notes.txt": b"mine"})
    before = _listing(tmp_path)
    inside = _listing(folder) if existing else None

    def write_half() -> None:
        with file_set(folder) as filling:
            _fill(filling, {"a.png": b"new a"})
            raise failure

    with pytest.raises(type(failure), match=str(failure) or None):
        write_half()
    assert _listing(tmp_path) == before
    if existing:
        assert _listing(folder) == inside


def test_a_move_that_fails_puts_the_folder_back(tmp_path: Path) -> None:
    """``a.png`` moves in first, then ``b.png`` cannot (a folder has its name): ``a.png``'s
    older file comes back and the new one goes."""
    folder = tmp_path / "maps"
    folder.mkdir()
    _fill(folder, {"a.png": b"old a"})
    (folder / "b.png").mkdir()
    before = _listing(folder)

    def write() -> None:
        with file_set(folder) as filling:
            _fill(filling, {"a.png": b"new a", "b.png": b"new b", "c.png": b"new c"})

    with pytest.raises(fxmaps.OutputError, match=r"cannot write .*b\.png.*: it is a folder"):
        write()
    assert _listing(folder) == before
