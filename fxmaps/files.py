"""Writing output files: a folder that must exist and be writable, and whole-file writes.

A file is written to a temporary name beside it and renamed into place only when
writing succeeded, so an error never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from fxmaps.errors import OutputError

__all__ = ["atomic_path", "output_file", "output_folder"]


def output_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, if its folder exists and is writable; else ``OutputError``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"cannot write {str(path)!r}: it is a folder; name a file in it, for example "
            f"{str(path / ('output' + (path.suffix or '.png')))!r}",
            path=str(path),
        )
    _writable(path.parent, f"cannot write {str(path)!r}", path)
    return path


def output_folder(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created if missing (its parent must exist and be writable)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"cannot write into {str(path)!r}: it is a file, not a folder", path=str(path)
        )
    if not path.is_dir():
        _writable(path.parent, f"cannot create {str(path)!r}", path)
        path.mkdir()
    _writable(path, f"cannot write into {str(path)!r}", path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` if the block succeeds."""
    target = output_file(path)
    # A fresh name, not a file made by mkstemp: the writer creates it, so the result gets the
    # permissions the user's umask gives (mkstemp's files are private to the owner).
    temporary = target.with_name(f".{target.stem}.{secrets.token_hex(6)}{target.suffix}")
    try:
        yield temporary
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def _writable(folder: Path, what: str, path: Path) -> None:
    """Raise :class:`OutputError` (about ``path``) unless ``folder`` exists and is writable."""
    if not folder.is_dir():
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(
                f"{what}: {str(blocker)!r} is a file, not a folder; choose a path in a folder",
                path=str(path),
            )
        raise OutputError(
            f"{what}: folder {str(folder)!r} does not exist; create it first", path=str(path)
        )
    if not os.access(folder, os.W_OK):
        raise OutputError(
            f"{what}: folder {str(folder)!r} is not writable; choose a folder you can write to",
            path=str(path),
        )
