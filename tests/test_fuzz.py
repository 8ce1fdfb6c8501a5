"""Fuzz of what fxmaps reads from outside: ``FeatureMaps.load`` and ``ChannelStats.load``
on random bytes and on valid files mutated (bytes flipped, cut short, safetensors headers
and saved containers edited), and model specifications and weights paths on the command
line. Whatever the input, the only way out is success or an ``FxmapsError`` (on the
command line: exit 0, or exit 2 with one line); never another exception.

A loaded file must be as good as one fxmaps wrote: it saves and loads back the same.

The default run is reproducible and takes seconds: each test draws ``EXAMPLES`` inputs
(25) with a fixed seed and no example database. ``make test-fuzz`` sets
``FXMAPS_FUZZ_EXAMPLES=2000`` and draws fresh ones on each run (hypothesis prints how to
reproduce a failure).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

import fxmaps
from fxmaps.cli import main

DEFAULT_EXAMPLES = 25
EXAMPLES = int(os.environ.get("FXMAPS_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))

fuzz = settings(
    max_examples=EXAMPLES,
    derandomize=EXAMPLES == DEFAULT_EXAMPLES,  # the default run: the same inputs every time
    database=None,
    deadline=None,  # torch.load and model building vary in time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)


# ------------------------------------------------------------------------- valid files


def _maps() -> fxmaps.FeatureMaps:
    """Maps of a conv (with a channel selection), a linear and a renamed node."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    return fxmaps.extract(model, torch.randn(2, 3, 8, 8), layers=["0", "3"], channels=[0, 1])


def _stats() -> fxmaps.ChannelStats:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    data = TensorDataset(torch.randn(6, 3, 8, 8))
    return fxmaps.channel_stats(model, data, layers="conv", topk=2, progress=False)


@functools.cache
def _valid() -> dict[str, bytes]:
    """The bytes of a file of each kind fxmaps writes, by suffix and kind (made once; not a
    fixture, so that hypothesis does not print them with each failing example)."""
    folder = Path(tempfile.mkdtemp(prefix="fxmaps-fuzz-"))
    written = {
        "maps.pt": _maps().save,
        "maps.safetensors": _maps().save,
        "stats.pt": _stats().save,
    }
    content = {}
    for name, save in written.items():
        save(folder / name)
        content[name] = (folder / name).read_bytes()
    shutil.rmtree(folder)
    return content


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for each example's files (hypothesis runs one test function many times)."""
    return tmp_path_factory.mktemp("fuzz")


def _load(kind: str, path: Path) -> Any:
    """Load ``path`` as ``kind`` ("maps" or "stats"): the result, or ``None`` for an
    ``FxmapsError``. Any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on pickle protocols
        try:
            return (fxmaps.FeatureMaps if kind == "maps" else fxmaps.ChannelStats).load(path)
        except fxmaps.FxmapsError as err:
            message = str(err)
    assert "\n" not in message, message
    assert len(message) < 600, message  # one short message, not a pasted traceback
    return None


def _round_trip(kind: str, loaded: Any, folder: Path, suffix: str) -> None:
    """What loaded saves and loads back the same: names, tensors, skipped."""
    again_path = folder / f"again{suffix}"
    loaded.save(again_path)
    again = _load(kind, again_path)
    assert again is not None, "a file that loaded does not load back after a save"
    assert list(again) == list(loaded)
    if kind == "maps":
        assert all(torch.equal(again[name], loaded[name]) for name in loaded)
        assert again.skipped == loaded.skipped
    else:
        assert all(
            torch.equal(getattr(again[name], f), getattr(loaded[name], f))
            for name in loaded
            for f in ("mean", "std", "max", "positive", "top_indices", "top_scores")
        )


def _check(kind: str, data: bytes, folder: Path, suffix: str) -> None:
    path = folder / f"fuzzed{suffix}"
    path.write_bytes(data)
    loaded = _load(kind, path)
    note(f"loaded: {loaded!r}")
    if loaded is not None:
        _round_trip(kind, loaded, folder, suffix)


FILES = ["maps.pt", "maps.safetensors", "stats.pt"]


def _kind(name: str) -> str:
    return name.split(".")[0]


def _suffix(name: str) -> str:
    return "." + name.split(".", 1)[1]


# ------------------------------------------------------------------------- mutations


@st.composite
def flipped(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes replaced."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def _values() -> st.SearchStrategy[Any]:
    """Values that may stand where a file's entry was: JSON-like values, and tensors."""
    tensors = st.builds(
        lambda shape, dtype: torch.zeros(shape, dtype=dtype),
        st.lists(st.integers(0, 3), max_size=3).map(tuple),
        st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]),
    )
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(),
        st.text(max_size=12),
    )
    return st.recursive(
        st.one_of(scalars, tensors),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path of keys and indices inside nested dicts and lists (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def edited(draw: st.DrawFn, content: Any, values: st.SearchStrategy[Any]) -> Any:
    """``content`` (nested dicts and lists) with one to three entries replaced, removed,
    or added."""
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(content))))
        if not path:
            content = draw(values)
            continue
        parent: Any = content
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(values)
        else:
            parent[path[-1]] = draw(values)
    return content


def _torch_content(data: bytes) -> Any:
    """What a ``.pt`` file holds, as plain containers (weights_only: nothing runs)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _saved(content: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


@st.composite
def edited_torch_file(draw: st.DrawFn, data: bytes) -> bytes:
    """A ``.pt`` file saved again with its containers edited."""
    return _saved(draw(edited(_torch_content(data), _values())))


@st.composite
def edited_header(draw: st.DrawFn, data: bytes) -> bytes:
    """A ``.safetensors`` file whose JSON header (tensor entries, and fxmaps's own metadata
    inside it) is edited; the tensors' bytes are kept."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["fxmaps"])
    jsons = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=12)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )
    if draw(st.booleans()):
        header["__metadata__"]["fxmaps"] = json.dumps(draw(edited(meta, jsons)))
    else:
        header = draw(edited(header, jsons))
    text = json.dumps(header).encode()
    if draw(st.booleans()):  # the declared length, too
        return draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little") + text + data[8 + size :]
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def _mutations(name: str, data: bytes) -> st.SearchStrategy[bytes]:
    ways = [
        flipped(data),
        st.integers(0, len(data) - 1).map(lambda n: data[:n]),  # cut short
        st.binary(max_size=64).map(lambda tail: data + tail),  # trailing bytes
    ]
    ways.append(edited_header(data) if name.endswith(".safetensors") else edited_torch_file(data))
    return st.one_of(ways)


# ---------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("name", FILES)
def test_the_valid_files_load(name: str, scratch: Path) -> None:
    """The starting points of the mutations are good files (else the fuzz proves little)."""
    path = scratch / name
    path.write_bytes(_valid()[name])
    loaded = _load(_kind(name), path)
    assert loaded is not None
    _round_trip(_kind(name), loaded, scratch, _suffix(name))


@pytest.mark.parametrize("name", FILES)
@fuzz
@given(data=st.binary(max_size=512))
def test_random_bytes(name: str, data: bytes, scratch: Path) -> None:
    _check(_kind(name), data, scratch, _suffix(name))


@pytest.mark.parametrize("name", FILES)
@fuzz
@given(choice=st.data())
def test_mutated_files(name: str, choice: st.DataObject, scratch: Path) -> None:
    data = choice.draw(_mutations(name, _valid()[name]), label="file")
    _check(_kind(name), data, scratch, _suffix(name))


# ------------------------------------------------------------------------ command line


def _run(argv: list[str]) -> tuple[int, str]:
    """``fxmaps ARGV``: exit 0, or 2 with one error line; never 1 (a bug) or a traceback.
    (Output is captured here, not by a fixture: hypothesis runs the test many times.)"""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
        warnings.simplefilter("ignore")
        code = main(argv)
    text = err.getvalue()
    note(f"exit {code}: {text!r}")
    assert code in (0, 2), text
    if code == 2:
        assert text.startswith("fxmaps: error: "), text
        assert text.count("\n") == 1, text
    return code, text


_NAMES = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24
)  # any text a shell could pass


def _not_installed(name: str) -> bool:
    """No module of that top-level name can be found, so a spec naming it imports nothing
    (a long run must not import what it draws: some modules act on import)."""
    top = name.split(".")[0].split(":")[0]
    try:
        return not top or importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        return True


_MODULES = _NAMES.filter(_not_installed)
_SPECS = st.one_of(
    _MODULES,
    st.builds("{}:{}".format, _MODULES, _NAMES),
    st.builds("timm:{}".format, _NAMES),
    st.builds("tests.models:{}".format, _NAMES),
    st.builds("{}.py:{}".format, _NAMES, _NAMES),
    st.sampled_from(["resnet", ":", "::", "a:b:c", ".py:Net", "tests/models.py:", "tests.models:"]),
)


@fuzz
@given(spec=_SPECS)
def test_model_specs(spec: str) -> None:
    """Random MODEL arguments; module names that exist are left out of the draw."""
    _run(["summary", "--no-input", "--", spec])


@fuzz
@given(content=st.one_of(st.binary(max_size=256), st.sampled_from([b"", b"PK\x03\x04", b"{}"])))
def test_weights_files(content: bytes, scratch: Path) -> None:
    path = scratch / "weights.pt"
    path.write_bytes(content)
    _run(["summary", "tests.models:CifarResNet", "--no-input", "--weights", str(path)])


@fuzz
@given(choice=st.data())
def test_weights_files_mutated(choice: st.DataObject, scratch: Path) -> None:
    """A state dict of the model, mutated as the loaders' files are."""
    from tests.models import CifarResNet

    data = _saved(CifarResNet().state_dict())
    path = scratch / "weights.pt"
    path.write_bytes(choice.draw(_mutations("w.pt", data), label="file"))
    _run(["summary", "tests.models:CifarResNet", "--no-input", "--weights", str(path)])


@fuzz
@given(path=_NAMES)
def test_weights_paths(path: str) -> None:
    _run(["summary", "tests.models:CifarResNet", "--no-input", f"--weights={path}"])
