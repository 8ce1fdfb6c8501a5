"""The exception hierarchy: every error carries its facts as attributes and pickles with them."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import fxmaps
from fxmaps import errors

# One error of each class, every keyword-only fact set to something other than its default.
FACTS: dict[type[fxmaps.FxmapsError], dict[str, Any]] = {
    errors.FxmapsError: {},
    errors.TraceError: {
        "module": "layer1.0",
        "location": "net.py:12 in forward: if x.sum() > 0:",
        "cause": "TraceError: symbolically traced variables cannot be used as inputs",
        "reason": "data-dependent control flow",
    },
    errors.ShapeError: {
        "node": "conv1",
        "got": ((1, 1, 32, 32),),
        "expected": "3 input channels",
        "minimum": 10,
    },
    errors.InputError: {"argument": "inputs", "got": "a list of float", "node": "conv1"},
    errors.DeviceError: {"expected": "cpu", "got": "meta"},
    errors.OptionError: {"option": "reduce", "value": "median", "valid": ("mean", "max")},
    errors.OutputError: {"path": "/missing/maps.pt"},
    errors.NodeNotFoundError: {"name": "layer1.0.conv9", "candidates": ("layer1.0.conv1",)},
    errors.GraphvizNotFoundError: {},
    errors.ImageError: {"source": "https://example.com/cat.jpg"},
    errors.ModelLoadError: {"spec": "resnet1", "candidates": ("resnet18", "resnet101")},
    errors.MemoryLimitError: {"needed": 4096, "limit": 1024.0},
}


def _subclasses(cls: type[fxmaps.FxmapsError]) -> set[type[fxmaps.FxmapsError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


def _keyword_facts(cls: type[fxmaps.FxmapsError]) -> set[str]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_every_error_class_is_listed() -> None:
    fxmaps_classes = {c for c in _subclasses(fxmaps.FxmapsError) if c.__module__ == errors.__name__}
    assert fxmaps_classes == set(FACTS)


@pytest.mark.parametrize("cls", FACTS, ids=lambda cls: cls.__name__)
def test_every_fact_is_an_attribute(cls: type[fxmaps.FxmapsError]) -> None:
    assert set(FACTS[cls]) == _keyword_facts(cls)
    error = cls("what failed", **FACTS[cls])
    assert {name: getattr(error, name) for name in FACTS[cls]} == FACTS[cls]
    defaults = cls("what failed")
    assert all(getattr(defaults, name) != value for name, value in FACTS[cls].items())


@pytest.mark.parametrize("cls", FACTS, ids=lambda cls: cls.__name__)
def test_errors_pickle_with_their_facts(cls: type[fxmaps.FxmapsError]) -> None:
    error = cls("node 'x' failed; do y", **FACTS[cls])
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) == "node 'x' failed; do y"
    assert copy.args == error.args
    assert vars(copy) == vars(error) == FACTS[cls]
