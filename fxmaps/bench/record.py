"""The record ``fxmaps bench --json`` writes: one versioned schema, and how to read one back.

The record is flat where a CI job looks first (versions, device, model, inputs, the
selection, the one ratio) and snake_case throughout. Its JSON Schema ships with the
package (:data:`SCHEMA_PATH`); docs/bench.md explains each field. The one ratio is
``ratio.median``: the median over rounds of fxmaps's time over the plain forward's
time in the same round, the number the table prints; ``ratio.min`` and ``ratio.max``
are its spread over the rounds, ``ratio.rounds`` each round's value.

:data:`SCHEMA_VERSION` changes whenever a field changes meaning or goes away; a
baseline of another version is refused by :func:`check_comparable`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fxmaps.errors import InputError, OptionError

if TYPE_CHECKING:
    from fxmaps.bench.extraction import ExtractionBenchmark
    from fxmaps.bench.harness import Timing
    from fxmaps.graph import Selection

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "check_comparable",
    "describe_selection",
    "read_record",
    "to_record",
]

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("bench.schema.json")
"""The JSON Schema (draft 2020-12) of :func:`to_record`'s output, installed with fxmaps."""

TIMING_KEYS = {
    "plain forward": "plain_forward",
    "fxmaps": "fxmaps",
    "forward hooks": "forward_hooks",
}
"""The callables' names in the table, and their keys in the record."""

_COMPARED = ("model", "input_shapes", "layer_selection")


def to_record(result: ExtractionBenchmark) -> dict[str, Any]:
    """``result`` as the versioned record (see the module docstring and docs/bench.md)."""
    env = result.environment.to_json() if result.environment else {}
    forward = result.timings["plain forward"]
    timings = {TIMING_KEYS[name]: t.to_json() for name, t in result.timings.items()}
    known = ("fxmaps", "torch", "torchvision", "python", "platform", "device", "device_name")
    versions = {f"{key}_version": env.get(key) for key in known[:4]}
    extra = {key: value for key, value in env.items() if key not in _ENVIRONMENT_KEYS}
    return {
        "schema_version": SCHEMA_VERSION,
        **versions,
        "platform": env.get("platform"),
        "device": env.get("device", "cpu"),
        "device_name": env.get("device_name"),
        "threads": env.get("threads"),
        "cpu_count": env.get("cpu_count"),
        "load_average": env.get("load_average"),
        "date": env.get("date"),
        "model": result.model,
        "input_shapes": result.input_shapes,
        "layer_selection": list(result.selection),
        "maps": result.layers,
        "hooked_maps": result.hooked,
        "bytes_kept": result.retained_bytes,
        "rounds": len(forward.seconds),
        "warmup": result.warmup,
        "timings": timings,
        "ratio": _ratio(result.timings["fxmaps"], forward),
        "hooks_ratio": _ratio(result.timings["forward hooks"], forward),
        "extra": extra,
    }


_ENVIRONMENT_KEYS = frozenset(
    {"fxmaps", "torch", "torchvision", "python", "platform", "device", "device_name",
     "threads", "cpu_count", "load_average", "date"}
)  # fmt: skip


def _ratio(timing: Timing, reference: Timing) -> dict[str, Any]:
    rounds = [a / b for a, b in zip(timing.seconds, reference.seconds, strict=True)]
    return {
        "median": timing.ratio_to(reference),
        "min": min(rounds),
        "max": max(rounds),
        "rounds": rounds,
    }


def describe_selection(layers: Selection) -> list[str]:
    """A selection as text, for the record: kinds, names and patterns as given.

    A module, a layer or a predicate is named by its type or its function's name, so two
    runs with the same selection give the same text.

    Example:
        >>> describe_selection("conv"), describe_selection(["conv", "layer1.*"])
        (['conv'], ['conv', 'layer1.*'])
    """
    if isinstance(layers, str):
        return [layers]
    if callable(layers) and not isinstance(layers, Iterable):
        return [f"<predicate {getattr(layers, '__qualname__', type(layers).__name__)}>"]
    if isinstance(layers, Mapping):
        return [f"{_one(key)} -> {value}" for key, value in layers.items()]
    if isinstance(layers, Iterable):
        return [_one(item) for item in layers]
    return [_one(layers)]


def _one(item: object) -> str:
    if isinstance(item, str):  # a Kind is a str enum: its value
        return str(getattr(item, "value", item))
    name = getattr(item, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(item).__name__}>"


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A record that ``fxmaps bench --json`` wrote, checked enough to compare against.

    Raises:
        InputError: Not a JSON object with a ``ratio``, or a record of another schema.
        OSError: The file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"baseline {str(path)!r} is not JSON ({err}); give a file that "
            "`fxmaps bench --json` wrote",
            argument="--baseline",
            got=str(path),
        ) from err
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise InputError(
            f"baseline {str(path)!r} has schema_version {version!r}, this fxmaps writes "
            f"{SCHEMA_VERSION}; make a new baseline with `fxmaps bench ... --json`",
            argument="--baseline",
            got=str(path),
        )
    ratio = data.get("ratio")
    if not isinstance(ratio, dict) or not isinstance(ratio.get("median"), int | float):
        raise InputError(
            f"baseline {str(path)!r} has no ratio.median; make a new baseline with "
            "`fxmaps bench ... --json`",
            argument="--baseline",
            got=str(path),
        )
    return dict(data)


def check_comparable(
    baseline: Mapping[str, Any], path: str | os.PathLike[str], **current: Any
) -> None:
    """Refuse a baseline measured on another model, input or selection.

    ``current`` gives this run's ``model``, ``input_shapes`` and ``layer_selection``
    (any of them; those given are compared).

    Raises:
        OptionError: The first field that differs, both values quoted.
    """
    for key in _COMPARED:
        if key in current and _plain(baseline.get(key)) != _plain(current[key]):
            raise OptionError(
                f"baseline {str(path)!r} was measured with {key} {baseline.get(key)!r}, this "
                f"run has {current[key]!r}; compare like with like, or make a new baseline",
                option="--baseline",
                value=str(path),
            )


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON reads them back."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
