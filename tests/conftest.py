"""Shared fixtures: golden-file comparison with an update flag, quiet torchvision builders."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torchvision
from torch import nn

GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite tests/golden/ from current output"
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with ``tests/golden/NAME`` (UTF-8); ``--update-golden`` rewrites the file."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"no golden file {path}; run pytest --update-golden"
        assert text == path.read_text(encoding="utf-8")

    return check


def tv_model(name: str) -> nn.Module:
    """A torchvision model with random weights, built without its init warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model: nn.Module = torchvision.models.get_model(name, weights=None)
    return model.eval()
