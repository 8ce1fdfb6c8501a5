"""Every script in examples/ runs and prints what it promises."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_resnet50_census(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "resnet50_census.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "{'conv': 49, 'downsample': 4, 'linear': 1, 'sequential': 4, 'residual': 16}" in out
    assert out.count("projection shortcut") == 4


def test_untraceable_model(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "untraceable_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "fxmaps could not trace into 1 module(s) of Net" in out
    assert re.search(r"^router +other \(opaque\) +Router +1×16×32×32 +2,592", out, re.M)
    assert "opaque: [('router', 'TraceError:" in out


def test_every_example_is_tested() -> None:
    tested = {"resnet50_census.py", "untraceable_model.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} - {"__init__.py"} == tested
