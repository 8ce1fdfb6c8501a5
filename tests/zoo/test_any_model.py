"""Models torch.fx cannot trace whole: every conv and linear call is a node with its exact map.

The default run takes a sample of each family; ``make test-zoo`` runs them all.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.zoo.any_model import CORPUS, AnyModel
from tests.zoo.any_survey import check


def _params() -> list[object]:
    return [
        pytest.param(entry, id=entry.name, marks=() if entry.sample else pytest.mark.zoo)
        for entry in CORPUS
    ]


@pytest.mark.parametrize("entry", _params())
def test_any_model(entry: AnyModel) -> None:
    if entry.requires is not None and importlib.util.find_spec(entry.requires) is None:
        pytest.skip(f"{entry.requires} is a test extra: pip install fxmaps[test]")
    checked = check(entry)
    assert checked.calls > 0
