"""The benchmark harness, on fake clocks: timings never go into assertions here."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import fxmaps
from fxmaps.bench.extraction import FORWARD, FXMAPS, HOOKS, ExtractionBenchmark
from fxmaps.bench.harness import (
    Environment,
    Timing,
    format_load,
    format_mib,
    format_table,
    record_environment,
    rotate,
    run_interleaved,
    write_json,
    write_results,
)

STANDARD_KEYS = {
    "fxmaps", "torch", "torchvision", "python", "platform", "device", "device_name",
    "threads", "cpu_count", "load_average", "date",
}  # fmt: skip


class FakeClock:
    """A clock that moves only when a fake callable says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def callable(self, name: str, seconds: list[float]) -> Callable[[], None]:
        """A callable that takes ``seconds[i]`` on its i-th call, and logs its name."""
        durations = iter(seconds)

        def run() -> None:
            self.calls.append(name)
            self.now += next(durations)

        return run


def test_rotate_shifts_left_one_place_a_round() -> None:
    names = ["a", "b", "c"]
    assert [rotate(names, r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"],
    ]  # fmt: skip
    assert rotate([], 3) == []


def test_rounds_rotate_after_warmup_and_warmup_is_not_kept() -> None:
    clock = FakeClock()
    callables = {name: clock.callable(name, [1.0] * 4) for name in ("a", "b", "c")}
    timings = run_interleaved(callables, rounds=3, warmup=1, clock=clock)
    assert clock.calls == [*"abc", *"bca", *"cab", *"abc"]
    assert list(timings) == ["a", "b", "c"]
    assert all(len(t.seconds) == 3 for t in timings.values())


def test_ratio_is_the_median_of_per_round_ratios() -> None:
    clock = FakeClock()
    # The first value of each is the warm-up round's, which must not count.
    reference = clock.callable("reference", [100.0, 1.0, 2.0, 3.0])
    candidate = clock.callable("candidate", [100.0, 2.0, 6.0, 3.0])  # ratios 2, 3, 1
    timings = run_interleaved(
        {"reference": reference, "candidate": candidate}, rounds=3, clock=clock
    )
    assert timings["reference"].seconds == (1.0, 2.0, 3.0)
    assert timings["candidate"].seconds == (2.0, 6.0, 3.0)
    assert timings["candidate"].ratio_to(timings["reference"]) == 2.0
    # A ratio of medians would say 1.5: pairing by round is the definition.
    assert timings["candidate"].median / timings["reference"].median == 1.5
    assert timings["reference"].ratio_to(timings["reference"]) == 1.0


def test_timing_statistics_and_json() -> None:
    timing = Timing((3.0, 1.0, 2.0, 10.0), peak_bytes=2**20)
    assert (timing.median, timing.min, timing.max) == (2.5, 1.0, 10.0)
    assert timing.to_json() == {
        "seconds": [3.0, 1.0, 2.0, 10.0], "median": 2.5, "min": 1.0, "max": 10.0,
        "peak_bytes": 2**20,
    }  # fmt: skip


def test_ratio_needs_the_same_rounds() -> None:
    with pytest.raises(fxmaps.OptionError, match=r"same rounds on both sides, got 2 and 3"):
        Timing((1.0, 2.0)).ratio_to(Timing((1.0, 2.0, 3.0)))


@pytest.mark.parametrize(
    ("callables", "rounds", "warmup"),
    [({"a": lambda: None}, 0, 1), ({"a": lambda: None}, 1, -1), ({}, 3, 1)],
)
def test_run_interleaved_rejects_empty_runs(
    callables: dict[str, Callable[[], None]], rounds: int, warmup: int
) -> None:
    with pytest.raises(fxmaps.OptionError, match=r"run_interleaved needs callables, rounds >= 1"):
        run_interleaved(callables, rounds=rounds, warmup=warmup)


def test_environment_records_the_standard_keys() -> None:
    env = record_environment("cpu", command="python bench.py")
    data = env.to_json()
    assert set(data) == STANDARD_KEYS | {"command"}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in data)
    assert (data["fxmaps"], data["torch"]) == (fxmaps.__version__, torch.__version__)
    assert (data["device"], data["device_name"]) == ("cpu", None)
    assert data["threads"] == torch.get_num_threads()
    assert env.describe().startswith(f"fxmaps {fxmaps.__version__}, torch {torch.__version__}")
    assert env.machine.startswith(f"cpu, {os.cpu_count()} CPUs, {data['threads']} torch thread")


def test_environment_lines_name_device_and_threads() -> None:
    data = record_environment("cpu").to_json()
    one = Environment.from_json({**data, "threads": 1, "cpu_count": 4})
    gpu = Environment.from_json({**data, "device": "cuda:0", "device_name": "H200", "threads": 8})
    assert one.machine == "cpu, 4 CPUs, 1 torch thread"
    assert gpu.machine.startswith("cuda:0 (H200), ")
    assert gpu.machine.endswith(", 8 torch threads")
    assert f"; {gpu.machine}" in gpu.describe()


def test_environment_refuses_extra_keys_that_hide_its_own() -> None:
    with pytest.raises(fxmaps.OptionError, match=r"\['torch'\] are recorded already"):
        record_environment(torch="2.0")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_environment_names_the_cuda_device() -> None:
    env = record_environment(torch.device("cuda", 0))
    assert env.device == "cuda:0"
    assert env.device_name == torch.cuda.get_device_name(0)
    assert env.device_name in env.describe()


def test_environment_json_round_trip(tmp_path: Path) -> None:
    env = record_environment("cpu", matplotlib="3.9.0")
    path = write_json(tmp_path / "env.json", env.to_json())
    assert Environment.from_json(json.loads(path.read_text())) == env
    assert [p.name for p in tmp_path.iterdir()] == ["env.json"]  # no temporary file left


def test_write_json_into_a_missing_folder_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(fxmaps.OutputError, match=r"folder .* does not exist; create it first"):
        write_json(tmp_path / "missing" / "out.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_write_results_writes_both_files(tmp_path: Path) -> None:
    markdown, data = write_results(tmp_path / "results", "bench_x", "# title\n\n", {"rows": [1]})
    assert (markdown.name, data.name) == ("bench_x.md", "bench_x.json")
    assert markdown.read_text() == "# title\n"
    assert json.loads(data.read_text()) == {"rows": [1]}


def test_format_table_prints_cells_as_given() -> None:
    table = format_table([["a", "1.050", "007"], ["bb", "2", "n/a"]], ["name", "ratio", "id"],
                         align=["left", "right", "left"])  # fmt: skip
    assert table.splitlines() == [
        "| name   |   ratio | id   |",
        "|:-------|--------:|:-----|",
        "| a      |   1.050 | 007  |",
        "| bb     |       2 | n/a  |",
    ]
    assert (format_mib(None), format_mib(3 * 2**19), format_load(None)) == ("n/a", "1.5 MiB", "n/a")


def test_extraction_table_and_json_from_fixed_timings() -> None:
    env = Environment.from_json({**record_environment("cpu").to_json(), "threads": 3})
    result = ExtractionBenchmark(
        model="toy",
        input_shapes=[[2, 3, 8, 8]],
        layers=3,
        hooked=1,
        retained_bytes=2**20,
        timings={
            FORWARD: Timing((1e-3, 2e-3, 4e-3), peak_bytes=2**20),
            FXMAPS: Timing((2e-3, 2e-3, 2e-3)),  # per round 2, 1, 0.5: median 1
            HOOKS: Timing((1e-3, 4e-3, 8e-3), peak_bytes=2**21),  # 1, 2, 2: median 2
        },
        environment=env,
    )
    lines = result.table().splitlines()
    assert lines[0] == "toy, input 2x3x8x8, 3 maps (1 reachable by hooks), 1.0 MiB kept; " + (
        "3 interleaved rounds after warm-up"
    )
    assert lines[2] == env.describe()
    assert "3 torch threads" in lines[2]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in lines[6:]}  # fmt: skip
    assert rows == {
        FORWARD: ["2.0", "1.0 - 4.0", "1.000x", "1.0 MiB"],
        FXMAPS: ["2.0", "2.0 - 2.0", "1.000x", "n/a"],
        HOOKS: ["4.0", "1.0 - 8.0", "2.000x", "2.0 MiB"],
    }
    data = result.to_json()  # the versioned record: environment fields flat, snake_case
    assert (data["torch_version"], data["fxmaps_version"]) == (env.torch, env.fxmaps)
    assert (data["threads"], data["device"], data["date"]) == (3, "cpu", env.date)
    # One ratio, the table's: the median over rounds of each round's ratio (the ratio of
    # medians is gone: the two disagreed), with its spread.
    assert data["hooks_ratio"] == {"median": 2.0, "min": 1.0, "max": 2.0, "rounds": [1, 2, 2]}
    assert data["ratio"] == {"median": 1.0, "min": 0.5, "max": 2.0, "rounds": [2, 1, 0.5]}
    assert data["timings"]["fxmaps"]["min"] == 2e-3
