"""FeatureMaps files: what :meth:`FeatureMaps.save` writes and what ``load`` checks.

A ``.safetensors`` file keeps each map under ``map/<name>`` and each channel selection
under ``channel/<name>`` (version 2: every key has exactly one prefix, so no map name can
collide with another key, ``channels/a`` included); the layer records, and each map's dtype
and shape, are JSON in its metadata. Any other suffix is a ``torch.save`` of plain
containers, read with ``weights_only=True``. Reading checks every entry (names, kinds,
layouts, types, which tensors are there, their dtypes and shapes) before a record is built,
and a bad file gives one :class:`InputError` that names the bad entry.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fxmaps.classify import Kind, Layout
from fxmaps.errors import FxmapsError, InputError
from fxmaps.files import atomic_path, short, unreadable
from fxmaps.graph import Layer

__all__ = ["Stored", "read_maps", "write_maps"]

_FORMAT = "fxmaps.FeatureMaps"
_VERSION = 2
"""1: safetensors keys were map names and ``channels/<name>``, which could collide."""
_MAP, _CHANNEL, _OLD_CHANNELS = "map/", "channel/", "channels/"

_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "kind": (str,),
    "target": (str,),
    "params": (int,),
    "block": (str, type(None)),
    "opaque": (bool,),
    "layout": (str,),
}
"""The entries every layer record must have, with their JSON types."""


@dataclass(frozen=True)
class Stored:
    """What a checked file holds, in the order of its layer records."""

    layers: dict[str, Layer]
    maps: dict[str, torch.Tensor]
    channels: dict[str, torch.Tensor]
    skipped: tuple[str, ...]


def write_maps(path: Path, content: Stored) -> None:
    """Write ``content`` to ``path`` whole (see the module's docstring for the format)."""
    maps = {name: t.detach().cpu().contiguous() for name, t in content.maps.items()}
    channels = {name: t.detach().cpu().contiguous() for name, t in content.channels.items()}
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "layers": [_layer_dict(content.layers[name], name, maps[name]) for name in maps],
        "skipped": list(content.skipped),
    }
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            tensors = {_MAP + k: v for k, v in maps.items()}
            tensors |= {_CHANNEL + k: v for k, v in channels.items()}
            tmp.touch()  # made here, so with the permissions the umask gives (0644 at 022) ...
            mode = stat.S_IMODE(tmp.stat().st_mode)
            _safetensors().save_file(tensors, str(tmp), metadata={"fxmaps": json.dumps(meta)})
            tmp.chmod(mode)  # ... which safetensors's own writer replaces by 0600
        else:  # through a file object, so that a full disk is an OSError torch raises from
            with tmp.open("wb") as file:
                torch.save({**meta, "maps": maps, "channels": channels}, file)


def read_maps(path: Path) -> Stored:
    """The checked content of the file at ``path``; :class:`InputError` naming what is bad."""
    try:
        meta, maps, channels = _read(path)
    except FxmapsError:
        raise
    except Exception as err:  # torch and safetensors raise many types for foreign files
        raise _bad(path, unreadable(err)) from err
    layers = _layers(path, meta.get("layers"))
    return Stored(
        layers=layers,
        maps=_tensors(path, meta["layers"], maps, layers),
        channels=_channels(path, channels, layers),
        skipped=_skipped(path, meta.get("skipped", [])),
    )


def _read(path: Path) -> tuple[dict[str, Any], Any, Any]:
    """The metadata, the maps and the channel selections, unchecked."""
    meta: Any
    maps: Any
    channels: Any
    if path.suffix == ".safetensors":
        meta, maps, channels = _read_safetensors(path)
    else:
        meta = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(meta, dict):
            raise _bad(path, f"it holds a {type(meta).__name__}, not a dict")
        maps, channels = meta.get("maps"), meta.get("channels", {})
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _bad(path, f"no {_FORMAT!r} format tag")
    if meta.get("version", 1) not in (1, _VERSION):
        raise _bad(path, f"version {meta.get('version')!r}; this fxmaps reads 1 and {_VERSION}")
    return meta, maps, channels


def _read_safetensors(path: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    with _safetensors().safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {})["fxmaps"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if isinstance(meta, dict) and meta.get("version", 1) == 1:  # keys as version 1 wrote them
        channels = {k.removeprefix(_OLD_CHANNELS): v for k, v in tensors.items() if
                    k.startswith(_OLD_CHANNELS)}  # fmt: skip
        return meta, {k: v for k, v in tensors.items() if not k.startswith(_OLD_CHANNELS)}, channels
    maps, channels = {}, {}
    for key, tensor in tensors.items():
        if key.startswith(_MAP):
            maps[key.removeprefix(_MAP)] = tensor
        elif key.startswith(_CHANNEL):
            channels[key.removeprefix(_CHANNEL)] = tensor
        else:
            raise _bad(path, f"tensor {key!r} is neither a map/ nor a channel/ entry")
    return meta, maps, channels


def _layers(path: Path, entries: Any) -> dict[str, Layer]:
    """The layer records, each entry checked; in the file's order."""
    if not isinstance(entries, list):
        raise _bad(path, f"'layers' is a {type(entries).__name__}, not a list of records")
    layers: dict[str, Layer] = {}
    for i, entry in enumerate(entries):
        layer = _layer(path, i, entry)
        name = _map_name(path, i, entry)
        if name in layers:
            raise _bad(path, f"layer record {i} repeats the map name {name!r}")
        layers[name] = layer
    return layers


def _layer(path: Path, i: int, entry: Any) -> Layer:
    if not isinstance(entry, dict):
        raise _bad(path, f"layer record {i} is a {type(entry).__name__}, not a dict")
    what = f"layer record {i} ({entry.get('name')!r})"
    for key, types in _FIELDS.items():
        if key not in entry:
            raise _bad(path, f"{what} has no {key!r}")
        if not isinstance(entry[key], types) or (bool in types) != isinstance(entry[key], bool):
            raise _bad(path, f"{what}: {key!r} is {entry[key]!r}")
    for key, enum in (("kind", Kind), ("layout", Layout)):
        if entry[key] not in {member.value for member in enum}:
            raise _bad(path, f"{what}: unknown {key} {entry[key]!r}")
    returned_by = entry.get("returned_by", [])
    if not _pairs(returned_by):
        raise _bad(path, f"{what}: 'returned_by' is {returned_by!r}")
    if not isinstance(entry.get("alias"), (str, type(None))):
        raise _bad(path, f"{what}: 'alias' is {entry['alias']!r}")
    return Layer(name=entry["name"], kind=Kind(entry["kind"]), target=entry["target"],
                 module=None, out_shape=_tuples(entry.get("out_shape")), params=entry["params"],
                 block=entry["block"], opaque=entry["opaque"], layout=Layout(entry["layout"]),
                 returned_by=tuple((p, c) for p, c in returned_by),
                 alias=entry.get("alias"))  # fmt: skip


def _tensors(
    path: Path, entries: list[dict[str, Any]], maps: Any, layers: Mapping[str, Layer]
) -> dict[str, torch.Tensor]:
    """The maps in the order of ``layers``: one tensor each, of the dtype and shape recorded."""
    if not isinstance(maps, dict):
        raise _bad(path, f"its maps are a {type(maps).__name__}, not a dict of tensors")
    for name in maps:
        if name not in layers:
            raise _bad(path, f"map {name!r} has no layer record")
    checked: dict[str, torch.Tensor] = {}
    for entry, name in zip(entries, layers, strict=True):
        tensor = maps.get(name)
        if not isinstance(tensor, torch.Tensor):
            got = "missing" if tensor is None else f"a {type(tensor).__name__}"
            raise _bad(path, f"the map of {name!r} is {got}, not a tensor")
        found = {"dtype": str(tensor.dtype), "shape": list(tensor.shape)}
        recorded = {key: entry.get("map", found)[key] for key in found}
        if recorded != found:
            raise _bad(path, f"the map of {name!r} is {found}, but it was saved as {recorded}")
        checked[name] = tensor
    return checked


def _channels(path: Path, channels: Any, layers: Mapping[str, Layer]) -> dict[str, torch.Tensor]:
    if not isinstance(channels, dict):
        raise _bad(path, f"its channels are a {type(channels).__name__}, not a dict")
    for name, kept in channels.items():
        if name not in layers:
            raise _bad(path, f"channel selection {name!r} has no layer record")
        if not isinstance(kept, torch.Tensor) or kept.ndim != 1 or kept.is_floating_point():
            raise _bad(path, f"channel selection {name!r} is not a 1-D tensor of indices")
    return dict(channels)


def _skipped(path: Path, skipped: Any) -> tuple[str, ...]:
    if not isinstance(skipped, list) or not all(isinstance(s, str) for s in skipped):
        raise _bad(path, f"'skipped' is {skipped!r}, not a list of names")
    return tuple(skipped)


def _map_name(path: Path, i: int, entry: dict[str, Any]) -> str:
    """The name of the map a record describes: the node's own name unless it was renamed
    (``layers={"layer1": "feat"}``; version 1 files kept only the node's name)."""
    facts = entry.get("map", {})
    if not isinstance(facts, dict) or not {"name", "dtype", "shape"} <= set(facts):
        if "map" in entry:
            raise _bad(path, f"layer record {i} ({entry['name']!r}): 'map' is {facts!r}")
        return str(entry["name"])
    if not isinstance(facts["name"], str):
        raise _bad(path, f"layer record {i} ({entry['name']!r}): map name {facts['name']!r}")
    return facts["name"]


def _layer_dict(layer: Layer, name: str, tensor: torch.Tensor) -> dict[str, Any]:
    return {
        "name": layer.name,
        "kind": layer.kind.value,
        "target": layer.target,
        "out_shape": layer.out_shape,
        "params": layer.params,
        "block": layer.block,
        "opaque": layer.opaque,
        "layout": layer.layout.value,
        "returned_by": [list(key) for key in layer.returned_by],
        "alias": layer.alias,
        "map": {"name": name, "dtype": str(tensor.dtype), "shape": list(tensor.shape)},
    }


def _pairs(value: Any) -> bool:
    """Whether ``value`` is a list of ``[module path, call index]`` pairs."""
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and type(p[1]) is int
        for p in value
    )


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _bad(path: Path, why: str) -> InputError:
    return InputError(
        f"{str(path)!r} is not a feature-maps file written by fxmaps: {short(why)}",
        argument="path",
        got=str(path),
    )


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError as err:
        raise InputError(
            "saving .safetensors files needs the safetensors package: pip install safetensors"
        ) from err
    return safetensors.torch
