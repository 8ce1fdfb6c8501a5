"""The harness every benchmark uses: environment, interleaved rounds, statistics, output.

A benchmark times a few named callables in one process. :func:`run_interleaved`
runs each of them once per round, after warm-up, in an order that rotates every
round, so that no callable always runs first or always right after another.
:class:`Timing` holds one callable's seconds per round with their median, min and
max, and :meth:`Timing.ratio_to`: the median over rounds of its time over a
reference's time in the same round. Pairing by round cancels the slow drifts of a
busy machine that a ratio of medians keeps. :func:`record_environment` notes what
the numbers were measured on; :func:`format_table`, :func:`write_json` and
:func:`write_results` write the report (every file whole, or not at all).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from fxmaps.errors import OptionError
from fxmaps.files import atomic_path

__all__ = [
    "Environment",
    "Timing",
    "format_load",
    "format_mib",
    "format_table",
    "read_load_average",
    "record_environment",
    "rotate",
    "run_interleaved",
    "write_json",
    "write_markdown",
    "write_results",
]


@dataclass(frozen=True)
class Environment:
    """What a benchmark ran on: versions, device, threads, machine and date.

    ``extra`` holds what one benchmark adds (a library's version, the command line);
    :meth:`to_json` puts its keys beside the others.

    Example:
        >>> env = record_environment("cpu", command="python bench.py")
        >>> env.device, env.device_name, env.extra
        ('cpu', None, {'command': 'python bench.py'})
        >>> Environment.from_json(env.to_json()) == env
        True
    """

    fxmaps: str
    torch: str
    torchvision: str | None
    python: str
    platform: str
    device: str
    device_name: str | None
    threads: int
    cpu_count: int | None
    load_average: tuple[float, ...] | None
    date: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def machine(self) -> str:
        """The device, the CPUs and torch's threads, as a report's line names them."""
        device = f"{self.device} ({self.device_name})" if self.device_name else self.device
        threads = f"{self.threads} torch thread{'' if self.threads == 1 else 's'}"
        return f"{device}, {self.cpu_count} CPUs, {threads}"

    def describe(self) -> str:
        """One line for a report: versions, machine, platform, load and date."""
        versions = f"fxmaps {self.fxmaps}, torch {self.torch}"
        if self.torchvision:
            versions += f", torchvision {self.torchvision}"
        load = f", load average {format_load(self.load_average)}" if self.load_average else ""
        return (
            f"{versions}, Python {self.python}; {self.machine}{load}; {self.platform}; {self.date}"
        )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data: one snake_case key per field, ``extra`` merged in."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if self.load_average is not None:
            data["load_average"] = list(self.load_average)
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Environment:
        """The record that :meth:`to_json` gave ``data``; unknown keys go to ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {key: value for key, value in data.items() if key in names}
        if known.get("load_average") is not None:
            known["load_average"] = tuple(known["load_average"])
        extra = {key: value for key, value in data.items() if key not in names}
        return cls(**known, extra=extra)


def record_environment(device: torch.device | str = "cpu", **extra: Any) -> Environment:
    """The environment of this process, measuring on ``device``.

    Args:
        device: Where the benchmark runs; a CUDA device adds its name.
        **extra: More facts to keep (``matplotlib="3.9.0"``, ``command=...``).

    Raises:
        OptionError: An ``extra`` key that names a field of :class:`Environment`.
    """
    import fxmaps

    clashes = sorted(set(extra) & {f.name for f in fields(Environment)})
    if clashes:
        raise OptionError(f"record_environment: {clashes} are recorded already; rename them")
    device = torch.device(device)
    cuda = device.type == "cuda"
    return Environment(
        fxmaps=fxmaps.__version__,
        torch=torch.__version__,
        torchvision=_torchvision_version(),
        python=platform.python_version(),
        platform=platform.platform(),
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if cuda else None,
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        load_average=read_load_average(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        extra=dict(extra),
    )


def read_load_average() -> tuple[float, ...] | None:
    """The system's load averages over 1, 5 and 15 minutes; None where there are none."""
    try:
        return tuple(os.getloadavg())
    except (AttributeError, OSError):  # Windows has no load average
        return None


def _torchvision_version() -> str | None:
    try:
        import torchvision
    except ImportError:
        return None
    return str(torchvision.__version__)


@dataclass(frozen=True)
class Timing:
    """Seconds per round of one callable, and its peak memory in bytes (if measured).

    Example:
        >>> fast, slow = Timing((1.0, 2.0, 4.0)), Timing((2.0, 8.0, 4.0))
        >>> slow.median, slow.min, slow.max
        (4.0, 2.0, 8.0)
        >>> slow.ratio_to(fast)  # rounds' ratios 2, 4 and 1
        2.0
    """

    seconds: tuple[float, ...]
    peak_bytes: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)

    def ratio_to(self, reference: Timing) -> float:
        """The median over rounds of this time over ``reference``'s time in the same round.

        Raises:
            OptionError: The two were not timed over the same rounds.
        """
        if len(self.seconds) != len(reference.seconds) or not self.seconds:
            raise OptionError(
                f"a ratio needs the same rounds on both sides, got {len(self.seconds)} "
                f"and {len(reference.seconds)}; time them in one run_interleaved call"
            )
        pairs = zip(self.seconds, reference.seconds, strict=True)
        return statistics.median(a / b for a, b in pairs)

    def to_json(self) -> dict[str, Any]:
        """Seconds per round, median, min, max and peak bytes, as JSON-ready data."""
        return {
            "seconds": list(self.seconds),
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "peak_bytes": self.peak_bytes,
        }


def run_interleaved(
    callables: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int = 1,
    device: torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_round: Callable[[int, int], object] | None = None,
) -> dict[str, Timing]:
    """Time each callable once per round, the order rotating every round (see :func:`rotate`).

    Args:
        callables: The callables by name; each round runs each once.
        rounds: Timed rounds.
        warmup: Untimed rounds first, rotating as well.
        device: A CUDA device is synchronised before and after each call.
        clock: Seconds as a float; tests pass a fake one.
        on_round: Called after each round, warm-up ones included, with the rounds
            done and the rounds in all (for a progress line).

    Returns:
        A :class:`Timing` by name, in the order of ``callables``.

    Example:
        >>> now = [0.0]
        >>> def takes(seconds):
        ...     def run():
        ...         now[0] += seconds
        ...     return run
        >>> timings = run_interleaved(
        ...     {"a": takes(1.0), "b": takes(3.0)}, rounds=2, clock=lambda: now[0]
        ... )
        >>> timings["b"].seconds, timings["b"].ratio_to(timings["a"])
        ((3.0, 3.0), 3.0)
    """
    names = list(callables)
    if rounds < 1 or warmup < 0 or not names:
        raise OptionError(
            f"run_interleaved needs callables, rounds >= 1 and warmup >= 0; got "
            f"{len(names)} callables, rounds={rounds}, warmup={warmup}"
        )
    sync = _synchronizer(device)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + rounds):
        for name in rotate(names, round_):
            sync()
            start = clock()
            result = callables[name]()
            sync()
            elapsed = clock() - start
            del result  # freed after the clock stops
            if round_ >= warmup:
                seconds[name].append(elapsed)
        if on_round is not None:
            on_round(round_ + 1, warmup + rounds)
    return {name: Timing(tuple(values)) for name, values in seconds.items()}


def rotate(names: Sequence[str], steps: int) -> list[str]:
    """``names`` rotated left by ``steps`` places: the order of round ``steps``.

    Example:
        >>> [rotate(["a", "b", "c"], r) for r in range(3)]
        [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b']]
    """
    start = steps % len(names) if names else 0
    return [*names[start:], *names[:start]]


def _synchronizer(device: torch.device | None) -> Callable[[], None]:
    if device is not None and device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def format_table(
    rows: Sequence[Sequence[object]],
    headers: Sequence[str],
    *,
    align: Sequence[str] | None = None,
) -> str:
    """A markdown table (tabulate's pipe format); cells print as given, never reparsed.

    Args:
        rows: The table's rows; format numbers before, as they should read.
        headers: One per column.
        align: ``"left"``, ``"right"`` or ``"center"`` per column (default: left).

    Example:
        >>> print(format_table([["fxmaps", "1.050x"]], ["", "ratio"], align=["left", "right"]))
        |        |   ratio |
        |:-------|--------:|
        | fxmaps |  1.050x |
    """
    return tabulate(
        [list(row) for row in rows],
        headers=list(headers),
        tablefmt="pipe",
        disable_numparse=True,
        colalign=tuple(align) if align else None,
    )


def format_load(load_average: Sequence[float] | None) -> str:
    """The one-minute load average with two decimals, ``n/a`` where there is none."""
    return f"{load_average[0]:.2f}" if load_average else "n/a"


def format_mib(value: int | None) -> str:
    """Bytes in MiB with one decimal, ``n/a`` for None (not measured)."""
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path``, whole (a temporary file, then a rename)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def write_markdown(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path``, whole, ending in one newline."""
    with atomic_path(path) as temporary:
        temporary.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return Path(path)


def write_results(folder: Path, stem: str, markdown: str, data: Any) -> tuple[Path, Path]:
    """Write ``stem.md`` and ``stem.json`` into ``folder`` (created with its parents).

    Returns:
        The paths of the markdown and the JSON file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_markdown(folder / f"{stem}.md", markdown),
        write_json(folder / f"{stem}.json", data),
    )
