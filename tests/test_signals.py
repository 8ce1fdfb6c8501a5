"""SIGINT and SIGTERM on the command line: exit 130 / 143, one line on stderr, no leftovers.

Real processes of the console script and of ``python -m fxmaps``, signalled at start-up
(while torch's libraries load), while the model runs (a hook of the model's first conv
marks it), and while the files are written (the hidden temporary folder is there); then
the exit code, the line and the folders' listings are checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import fxmaps
from fxmaps.cli.signals import Terminated, unwinding

ROOT = Path(fxmaps.__file__).resolve().parent.parent
CONSOLE = Path(sys.executable).parent / "fxmaps"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the tests watch processes through Linux's /proc"
)

# Thirteen convs, drawn in a second or two; with MARK set, the first conv's hook marks the
# run and sleeps, so the model is running when the mark appears.
TINY = """
import os
import time
from pathlib import Path

import torch
from torch import nn


def _mark(module: nn.Module, args: object) -> None:
    if os.environ.get("MARK"):
        Path(os.environ["MARK"]).touch()
        time.sleep(2)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(
            *[m for _ in range(12) for m in (nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())]
        )
        self.stem.register_forward_pre_hook(_mark)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))
"""
SIZE = ["--input-size", "3", "32", "32"]
WORDS = {
    int(signal.SIGINT): "fxmaps: interrupted",
    int(signal.SIGTERM): "fxmaps: terminated (SIGTERM)",
}


@dataclass
class Ended:
    code: int
    lines: list[str]
    stderr: str


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder holding the model file and a few photos, where the commands write."""
    from PIL import Image

    (tmp_path / "tiny.py").write_text(TINY)
    (tmp_path / "photos").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "photos" / f"{i}.png")
    return tmp_path


def _signal_when(
    work: Path,
    args: list[str],
    ready: Callable[[int], bool],
    number: int,
    *,
    console: bool = False,
    mark: bool = False,
) -> Ended:
    """Start the command, send ``number`` once ``ready(pid)``, and collect how it ended."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ beside the model file
    if mark:
        env["MARK"] = str(work / "running")
    command = [str(CONSOLE)] if console else [sys.executable, "-m", "fxmaps"]
    spec = f"{work / 'tiny.py'}:Tiny"
    process = subprocess.Popen([*command, args[0], spec, *SIZE, *args[1:]], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        while not ready(process.pid):
            assert process.poll() is None, "the command ended before the moment to signal it"
            time.sleep(0.005)
        process.send_signal(number)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    stderr = err.decode("utf-8", "replace")
    shown = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n")]  # as a terminal shows it
    lines = [line for line in shown if line.strip() and "%|" not in line]  # progress bars: out
    return Ended(process.returncode, lines, stderr)


def torch_loading(pid: int) -> bool:
    """Whether the process has started loading torch's libraries (it imports torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def marked(work: Path) -> Callable[[int], bool]:
    return lambda pid: (work / "running").exists()


def hidden_in(folder: Path) -> Callable[[int], bool]:
    """Whether a hidden temporary entry has appeared in ``folder``."""
    return lambda pid: any(path.name.startswith(".") for path in folder.iterdir())


def _check(ended: Ended, number: int) -> None:
    assert ended.code == 128 + number, ended.stderr[-3000:]
    assert ended.lines == [WORDS[number]], ended.stderr[-3000:]
    assert "Traceback" not in ended.stderr


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() if p.is_file() else b"" for p in folder.iterdir()}


@pytest.mark.parametrize(("number", "console"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_a_signal_while_torch_loads(work: Path, number: int, console: bool) -> None:
    if console and not CONSOLE.exists():
        pytest.skip(f"no console script at {CONSOLE}: fxmaps is not installed in this env")
    before = _listing(work)
    ended = _signal_when(work, ["maps", "-o", "maps"], torch_loading, number, console=console)
    _check(ended, number)
    assert _listing(work) == before


@pytest.mark.parametrize(
    ("command", "number"),
    [
        (["maps", "-o", "maps"], signal.SIGTERM),
        (["report", "-o", "report.html"], signal.SIGTERM),
        (["stats", "--data", "photos", "-o", "stats"], signal.SIGINT),
    ],
)
def test_a_signal_while_the_model_runs(work: Path, command: list[str], number: int) -> None:
    before = _listing(work)
    ended = _signal_when(work, command, marked(work), number, mark=True)
    _check(ended, number)
    assert _listing(work) == {**before, "running": b""}


@pytest.mark.parametrize(
    ("command", "number"),
    [
        (["maps", "-o", "maps"], signal.SIGTERM),
        (["stats", "--data", "photos", "-o", "stats"], signal.SIGTERM),
    ],
)
def test_a_signal_while_a_new_folder_is_written(
    work: Path, command: list[str], number: int
) -> None:
    before = _listing(work)
    ended = _signal_when(work, command, hidden_in(work), number)
    _check(ended, number)
    assert _listing(work) == before  # neither the folder nor its hidden temporary one


def test_a_signal_while_an_existing_folder_is_written(work: Path) -> None:
    """The folder's own files, and an older run's of the same names, stay as they were."""
    folder = work / "maps"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "stem.png").write_bytes(b"an older run's stem")
    (folder / "index.json").write_text('{"files": {"stem.png": "stem"}}\n')
    before = _listing(folder)
    ended = _signal_when(work, ["maps", "-o", "maps"], hidden_in(folder), signal.SIGINT)
    _check(ended, signal.SIGINT)
    assert _listing(folder) == before


def _terminated_while_cleaning(cleaned: list[bool]) -> None:
    with unwinding():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # cut short by the handler's exception
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # ignored: the cleanup goes on
            time.sleep(0.05)
            cleaned.append(True)


def test_sigterm_unwinds_and_later_signals_wait_for_the_cleanup() -> None:
    """In this process: SIGTERM raises Terminated where the code was; a second signal while
    it unwinds is ignored; the handlers are put back afterwards."""
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    cleaned: list[bool] = []
    started = time.monotonic()
    with pytest.raises(Terminated, match=r"terminated by signal 15"):
        _terminated_while_cleaning(cleaned)
    assert time.monotonic() - started < 4  # the sleep was cut short
    assert cleaned == [True]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == previous


def test_importing_fxmaps_leaves_signals_alone() -> None:
    """As a library (as in this test process), fxmaps sets no handler: only the fxmaps
    command does."""
    assert "fxmaps" in sys.modules
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize(
    ("argv0", "orig_argv", "command"),
    [
        ("/venv/bin/fxmaps", ["/venv/bin/python", "/venv/bin/fxmaps", "maps"], True),
        ("-m", ["python", "-m", "fxmaps", "maps"], True),  # argv[0] while -m imports
        ("-m", ["python", "-X", "importtime", "-u", "-m", "fxmaps"], True),
        ("-m", ["python", "-mfxmaps", "stats"], True),
        ("-m", ["python", "-m", "pytest", "-m", "fxmaps"], False),  # another module
        ("script.py", ["python", "script.py", "-m", "fxmaps"], False),  # a user's script
        ("-c", ["python", "-c", "import fxmaps"], False),
    ],
)
def test_only_the_fxmaps_command_handles_signals_while_it_starts(
    monkeypatch: pytest.MonkeyPatch, argv0: str, orig_argv: list[str], command: bool
) -> None:
    from fxmaps.cli.signals import quiet_start_up

    monkeypatch.setattr(sys, "argv", [argv0, *orig_argv[2:]])
    monkeypatch.setattr(sys, "orig_argv", orig_argv, raising=False)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        quiet_start_up()
        now = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert (now != previous) is command
    if command:
        assert now[0] is now[1]  # one handler that ends the process for both


# A signal whose handler runs inside a weakref callback: Python prints the exception the
# handler raises ("Exception ignored in ...") and goes on, as happens when a signal lands
# while the garbage collector runs such a callback.
SWALLOWED = """
import os
import signal
import weakref

import torch
from torch import nn

fired = []


class _Thing:
    pass


def _signal_in_callback(ref: object) -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the callback


def _once(module: nn.Module, args: object, output: torch.Tensor) -> None:
    if output.device.type == "cpu" and not fired:  # a real run, not one on the meta device
        fired.append(True)
        thing = _Thing()
        ref = weakref.ref(thing, _signal_in_callback)
        del thing  # the callback runs now
        assert ref() is None


class Swallowed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.conv.register_forward_hook(_once)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
"""


def test_a_signal_python_swallows_still_ends_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command does not go on to write its files: the next set of files to appear
    raises the signal's exception again, and the command ends with 143 and one line."""
    from fxmaps.cli import main

    (tmp_path / "swallowed.py").write_text(SWALLOWED)
    out = tmp_path / "maps"
    spec = f"{tmp_path / 'swallowed.py'}:Swallowed"
    code = main(["maps", spec, "--input-size", "3", "16", "16", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == ["fxmaps: terminated (SIGTERM)"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swallowed.py"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
