"""Writing output files: a folder that must exist and be writable, whole files, sets of files;
and why a file could not be read back, in words.

A file is written to a temporary name beside it and renamed into place only when
writing succeeded, so an error never leaves a partial file behind (:func:`atomic_path`).
A command's several files are a set (:func:`file_set`): written into a hidden temporary
folder and moved into place only when all are written. A full disk (``ENOSPC``), a full
quota (``EDQUOT``) or a file-size limit (``EFBIG``) is one :class:`OutputError` naming the
path, whoever was writing (Python, torch, safetensors, matplotlib).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

from fxmaps.errors import FxmapsError, OutputError

__all__ = [
    "INDEX",
    "atomic_path",
    "file_set",
    "no_space",
    "node_files",
    "output_file",
    "output_folder",
    "short",
    "signals_held",
    "stop_pending",
    "stopping",
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
        with signals_held():
            stop_pending()
            temporary.replace(target)
    except Exception as err:
        full = no_space(err, target)
        if full is None:
            raise
        raise full from err
    finally:
        with signals_held():
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def file_set(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder to fill with files that appear in the folder ``path`` together or not at all.

    A new folder is filled under a hidden temporary name beside it (``.name.<hex>``) and
    renamed to ``path`` when the block succeeds. An existing folder is filled through a
    hidden temporary folder inside it (``.fxmaps.<hex>``), whose files are moved in when the
    block succeeds: a file of the same name is replaced, the folder's other files are left
    as they are; if a move fails, the folder is put back as it was. When the block fails
    (an error, or a signal that the command line turns into an exception), nothing of it
    is left. SIGINT and SIGTERM wait while the files move and while the temporary folder
    is removed.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "maps"
        >>> with file_set(folder) as filling:
        ...     _ = (filling / "a.png").write_bytes(b"a")
        ...     _ = (filling / "b.png").write_bytes(b"b")
        >>> sorted(p.name for p in folder.iterdir())
        ['a.png', 'b.png']
    """
    path = Path(path)
    existing = path.is_dir()
    if existing:
        output_folder(path)
        temporary = path / f".fxmaps.{secrets.token_hex(6)}"
    else:
        output_file(path)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        temporary.mkdir()
        yield temporary
        with signals_held():
            stop_pending()
            if existing:
                _move_in(temporary, path)
            else:
                temporary.rename(path)
    except OutputError as err:  # name where the file was going, not the hidden folder
        hidden, shown, where = str(temporary), str(path), err.path or ""
        if not where.startswith(hidden):
            raise
        message, where = str(err).replace(hidden, shown), where.replace(hidden, shown)
        raise OutputError(message, path=where) from err
    except Exception as err:
        full = no_space(err, path)
        if full is None:
            raise
        raise full from err
    finally:
        with signals_held():
            shutil.rmtree(temporary, ignore_errors=True)


def _move_in(source: Path, folder: Path) -> None:
    """Move every file of ``source`` into ``folder``, replacing files of the same name; on
    a failure, put ``folder`` back as it was (the files replaced wait in a backup folder)."""
    names = sorted(p.name for p in source.iterdir())
    backup = folder / f".fxmaps.{secrets.token_hex(6)}.replaced"
    backup.mkdir()
    try:
        for name in names:
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                raise OutputError(
                    f"cannot write {str(target)!r}: it is a folder; move it away or write "
                    "elsewhere",
                    path=str(target),
                )
            if target.exists() or target.is_symlink():
                target.replace(backup / name)
            (source / name).replace(target)
    except BaseException:
        for name in names:  # undo: new files back out, the replaced ones back in
            if not (source / name).exists() and (folder / name).exists():
                (folder / name).replace(source / name)
            if (backup / name).exists() or (backup / name).is_symlink():
                (backup / name).replace(folder / name)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)


def stopping(err: BaseException | None) -> None:
    """Note the exception a signal raised (the command line's handler calls this as it
    raises it; ``None`` clears it when the command ends).

    Python only prints an exception raised where it cannot propagate (a signal that lands
    in a weakref callback or a ``__del__``), and the command would go on: the next file
    or set of files about to appear raises it again instead (:func:`stop_pending`).
    """
    _stopping[:] = [] if err is None else [err]


def stop_pending() -> None:
    """Raise the exception a signal raised, if Python swallowed it (see :func:`stopping`)."""
    if _stopping:
        raise _stopping[0]


_stopping: list[BaseException] = []


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (are blocked) while the block runs, and arrive after it.

    What must not be cut halfway (moving a set of files in, removing temporary files) runs
    in this block; where the system has no signal masks, the block just runs.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_NO_SPACE = {  # ENOSPC in the system's own words, the others with theirs alongside
    errno.ENOSPC: ("No space left on device", "free some space or write elsewhere"),
    errno.EDQUOT: ("no space left: Disk quota exceeded", "free some space or write elsewhere"),
    errno.EFBIG: (
        "no space left: File too large, over the file-size limit",
        "raise the limit (ulimit -f) or write elsewhere",
    ),
}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
"""How Rust libraries (safetensors) print the system's error number in their messages."""


def no_space(err: BaseException, path: str | os.PathLike[str]) -> OutputError | None:
    """The :class:`OutputError` to raise for ``err`` while writing ``path``, when ``err`` (or
    an error it was raised from, or during) is a full disk, a full quota or a file-size
    limit; else ``None``.

    torch reports a failed write as a ``RuntimeError`` raised while handling the system's
    ``OSError`` (when it writes to a file object), safetensors as a ``SafetensorError`` whose
    message ends ``(os error 28)``; both are recognised.

    Example:
        >>> no_space(OSError(28, "No space left on device"), "maps.pt")
        OutputError("cannot write 'maps.pt': No space left on device (ENOSPC); free some space or write elsewhere")
    """  # noqa: E501
    if isinstance(err, FxmapsError):
        return None  # already said
    for cause in _chain(err):
        number = cause.errno if isinstance(cause, OSError) else None
        match = _OS_ERROR.search(str(cause))
        if number not in _NO_SPACE and match:
            number = int(match.group(1))
        if number in _NO_SPACE:
            reason, fix = _NO_SPACE[number]
            return OutputError(
                f"cannot write {str(path)!r}: {reason} ({errno.errorcode[number]}); {fix}",
                path=str(path),
            )
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then what it was raised from or during, and so on."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


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
