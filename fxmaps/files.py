"""Writing output files: a folder that must exist and be writable, and whole-file writes;
and why a file could not be read back, in words.

A file is written to a temporary name beside it and renamed into place only when
writing succeeded, so an error never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from fxmaps.errors import OutputError

__all__ = [
    "INDEX",
    "atomic_path",
    "node_files",
    "output_file",
    "output_folder",
    "short",
    "unreadable",
    "write_index",
]


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


INDEX = "index.json"
"""The file in a folder of per-node files that says which file holds which node."""

_MAX_BYTES = 200
"""The longest file name written for a node, in UTF-8 bytes (file systems allow 255)."""


def node_files(names: Iterable[str], suffix: str = ".png") -> dict[str, str]:
    """A file name for each node name, unique and safe to join to an output folder.

    A name made only of letters, digits, ``.``, ``_`` and ``-`` that does not start with a dot
    is kept (``layer1.0.conv1`` -> ``layer1.0.conv1.png``). Any other name (``/`` or ``\\``,
    ``..``, NUL or other control characters, a leading dot, over 200 bytes) has each other
    character replaced by ``_``, a leading dot by ``_``, is cut to fit, and ends with a short
    hash of the original, so no result can name a path outside the folder or collide.

    Example:
        >>> node_files(["layer1.0.conv1", "../up"])
        {'layer1.0.conv1': 'layer1.0.conv1.png', '../up': '_._up-8c722b8a.png'}
    """
    files: dict[str, str] = {}
    taken: set[str] = {INDEX.casefold()}
    for name in names:
        candidate = _file_name(name, suffix)
        counter = 1
        while candidate.casefold() in taken:  # case-insensitive file systems too
            counter += 1
            candidate = _file_name(f"{name}\0{counter}", suffix, force=True)
        taken.add(candidate.casefold())
        files[name] = candidate
    return files


def write_index(folder: Path, files: dict[str, str]) -> Path:
    """Write ``folder/index.json``: ``{"files": {file name: node name}}``, whole."""
    text = json.dumps({"files": {file: name for name, file in files.items()}}, indent=1,
                      ensure_ascii=False)  # fmt: skip
    with atomic_path(folder / INDEX) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
    return folder / INDEX


def _file_name(name: str, suffix: str, *, force: bool = False) -> str:
    """``name`` + ``suffix`` if it is safe as it is, else its encoded form (see node_files)."""
    plain = name.replace("\0", "")
    kept = "".join(c if c.isalnum() or c in "._-" else "_" for c in plain)
    if kept.startswith("."):
        kept = "_" + kept[1:]
    if not force and kept == name and len((kept + suffix).encode()) <= _MAX_BYTES and kept:
        return kept + suffix
    tag = "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    room = _MAX_BYTES - len((tag + suffix).encode())
    stem = kept.encode()[:room].decode("utf-8", "ignore")
    return stem + tag + suffix


def unreadable(err: BaseException) -> str:
    """Why ``torch.load`` (``weights_only=True``) or safetensors failed on a file, in one
    short clause: pickled objects (never unpickled: that can run code), a truncated or
    corrupt file, or the error's own first words."""
    text = " ".join(str(err).split())
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"it holds pickled Python objects{what}, which fxmaps does not unpickle because "
            "that can run code"
        )
    if "zip archive" in text or "corrupt" in text or isinstance(err, (EOFError, OSError)):
        return f"it is truncated or corrupt ({text[:160]})"
    return f"{type(err).__name__}: {text[:160]}"


def short(text: str, limit: int = 240) -> str:
    """``text`` on one line, cut to ``limit`` characters: a value read from a file, such as a
    tensor's repr, quoted in an error message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
