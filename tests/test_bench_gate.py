"""``fxmaps bench --json`` and its gate: the record against its JSON Schema, and the gate's
verdicts on real runs of a small model (never how fast: timings do not go into tests)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from fxmaps.bench.gate import REGRESSION_EXIT_CODE, compare_ratios, parse_tolerance
from fxmaps.bench.record import SCHEMA_PATH, SCHEMA_VERSION
from fxmaps.cli import main

jsonschema = pytest.importorskip("jsonschema", reason="the schema test needs jsonschema")

MODEL = ("tests.models:CifarResNet", "--input-size", "3", "16", "16", "--batch", "2")
RUN = (*MODEL, "--repeat", "3", "--threads", "1", "--layers", "conv", "linear")


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bench", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("bench") / "baseline.json"
    assert main(["bench", *RUN, "--json", str(path)]) == 0
    return path, json.loads(path.read_text())


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_the_record_follows_its_schema(baseline: tuple[Path, dict[str, Any]]) -> None:
    _, data = baseline
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in _keys(data))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["torch_version"] == torch.__version__
    assert data["threads"] == 1
    assert data["layer_selection"] == ["conv", "linear"]
    assert (data["maps"], data["hooked_maps"]) == (8, 8)  # 7 convs and the linear of the toy
    assert data["rounds"] == len(data["timings"]["fxmaps"]["seconds"]) == 3


def test_the_one_ratio_is_the_median_of_rounds(baseline: tuple[Path, dict[str, Any]]) -> None:
    _, data = baseline
    fxmaps_s, forward_s = (
        data["timings"]["fxmaps"]["seconds"],
        data["timings"]["plain_forward"]["seconds"],
    )
    rounds = [a / b for a, b in zip(fxmaps_s, forward_s, strict=True)]
    assert data["ratio"]["rounds"] == rounds
    assert data["ratio"]["median"] == statistics.median(rounds)
    assert (data["ratio"]["min"], data["ratio"]["max"]) == (min(rounds), max(rounds))


def test_the_table_prints_the_records_ratio(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    record, summary = tmp_path / "run.json", tmp_path / "summary.md"
    code, out, _ = bench(capsys, *RUN, "--json", str(record), "--markdown", str(summary))
    assert code == 0
    ratio = json.loads(record.read_text())["ratio"]["median"]
    assert re.search(rf"\| fxmaps +\|.*\| +{ratio:.3f}x \|", out)
    assert summary.read_text() == out.split("\nwrote ")[0].rstrip("\n") + "\n"


def test_the_gate_passes_against_its_own_baseline(
    capsys: pytest.CaptureFixture[str], baseline: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, data = baseline
    record = tmp_path / "run.json"
    code, out, _ = bench(capsys, *RUN, "--baseline", str(path), "--json", str(record))
    ratio = json.loads(record.read_text())["ratio"]["median"]
    verdict = compare_ratios(ratio, data["ratio"]["median"], tolerance=0.10)
    assert code == (REGRESSION_EXIT_CODE if verdict.regressed else 0)
    assert verdict.line() in out.splitlines()
    # A tolerance wide enough for a loaded machine: the same code against itself passes.
    code, out, _ = bench(capsys, *RUN, "--baseline", str(path), "--tolerance", "400%")
    assert code == 0
    assert re.search(r"^ok: fxmaps / forward \S+x, baseline \S+x: [+-]\S+% \(tolerance 400.0%\)$",
                     out, re.MULTILINE)  # fmt: skip


def test_the_gate_fails_against_a_faster_baseline(
    capsys: pytest.CaptureFixture[str], baseline: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, data = baseline
    doctored = tmp_path / "faster.json"
    faster = data["ratio"]["median"] / 10
    doctored.write_text(json.dumps({**data, "ratio": {**data["ratio"], "median": faster}}))
    record = tmp_path / "run.json"
    code, out, _ = bench(
        capsys, *RUN, "--baseline", str(doctored), "--tolerance", "100%", "--json", str(record)
    )
    assert code == REGRESSION_EXIT_CODE
    ratio = json.loads(record.read_text())["ratio"]["median"]
    change = (ratio / faster - 1) * 100
    line = (
        f"regression: fxmaps / forward {ratio:.3f}x, baseline {faster:.3f}x: "
        f"+{change:.1f}% (tolerance 100.0%)"
    )
    assert line in out.splitlines()


@pytest.mark.parametrize(
    ("change", "argv", "message"),
    [
        ({"model": "resnet18"}, RUN, r"model 'resnet18', this run has 'tests.models:CifarResNet'"),
        ({"input_shapes": [[4, 3, 16, 16]]}, RUN, r"input_shapes \[\[4, 3, 16, 16\]\]"),
        ({"layer_selection": ["conv"]}, RUN, r"layer_selection \['conv'\], this run has"),
        ({"schema_version": 0}, RUN, r"schema_version 0, this fxmaps writes 1"),
        ({"ratio": None}, RUN, r"has no ratio.median"),
    ],
    ids=["model", "input", "layers", "schema", "no-ratio"],
)
def test_the_gate_refuses_a_baseline_of_something_else(
    capsys: pytest.CaptureFixture[str],
    baseline: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    change: dict[str, Any],
    argv: tuple[str, ...],
    message: str,
) -> None:
    _, data = baseline
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, **change}))
    code, out, err = bench(capsys, *argv, "--baseline", str(other))
    assert code == 2
    assert re.search(message, err)
    assert out == ""  # refused before any timing


def test_a_baseline_that_is_not_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text("| a table |")
    code, _, err = bench(capsys, *RUN, "--baseline", str(other))
    assert code == 2
    assert "is not JSON" in err


@pytest.mark.parametrize(
    ("text", "value"), [("10%", 0.10), ("2.5%", 0.025), ("0.1", 0.1), ("0%", 0.0), ("150%", 1.5)]
)
def test_tolerances(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "-5%", "ten", "1.5", ""])
def test_tolerances_refused(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with pytest.raises(SystemExit, match=r"^2$"):
        main(["bench", *MODEL, f"--tolerance={text}"])
    assert "give a percentage such as 10% or a fraction such as 0.1" in capsys.readouterr().err


def test_the_verdict_at_the_edge() -> None:
    assert not compare_ratios(1.10, 1.0, tolerance=0.10 + 1e-9).regressed
    assert compare_ratios(1.2, 1.0, tolerance=0.10).regressed
    assert not compare_ratios(0.5, 1.0, tolerance=0.0).regressed  # faster never fails
