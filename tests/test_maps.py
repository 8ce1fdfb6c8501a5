"""FeatureMaps: a read-only mapping with layer metadata, saved and loaded without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fxmaps
from tests import models as toy
from tests.oracles import hook_outputs


@pytest.fixture(scope="module")
def maps() -> fxmaps.FeatureMaps:
    graph = fxmaps.analyze(toy.CifarResNet(), torch.randn(2, 3, 16, 16))
    return fxmaps.extract(
        graph, torch.randn(2, 3, 16, 16), layers=["layer2.*", "linear"], channels="top:3"
    )


def test_mapping_in_the_order_asked(maps: fxmaps.FeatureMaps) -> None:
    names = list(maps)
    assert names[0] == "layer2.0.conv1"
    assert names[-1] == "linear"
    assert len(maps) == len(names)
    assert "linear" in maps
    assert "nope" not in maps
    assert dict(maps.items()).keys() == set(names)


@pytest.mark.parametrize("key", [None, 0, 1, 1.5, object(), ("linear",), ["linear"]])
def test_keys_that_are_not_names_are_not_in_the_maps(maps: fxmaps.FeatureMaps, key: object) -> None:
    assert key not in maps
    assert all(key != name for name in maps)  # the oracle: no map has that key
    assert maps.get(key) is None  # type: ignore[call-overload]
    with pytest.raises(fxmaps.NodeNotFoundError, match="maps are named by strings") as info:
        maps[key]  # type: ignore[index]
    assert info.value.name is key
    with pytest.raises(KeyError, match="no map named"):  # what ordinary code catches
        maps[key]  # type: ignore[index]


def test_read_only(maps: fxmaps.FeatureMaps) -> None:
    with pytest.raises(TypeError, match="does not support item assignment"):
        maps["linear"] = torch.zeros(1)  # type: ignore[index]


def test_layer_metadata(maps: fxmaps.FeatureMaps) -> None:
    layer = maps.layer("layer2.0.shortcut.0")
    assert (layer.kind, layer.block) == (fxmaps.Kind.DOWNSAMPLE, "layer2.0")
    kept = maps.channels("linear")
    assert kept is not None
    assert kept.numel() == 3
    assert maps.skipped == ()
    assert maps.nbytes == sum(t.numel() * 4 for t in maps.values())
    assert repr(maps).startswith(f"<FeatureMaps {len(maps)} maps")


def test_to_cpu_and_numpy(maps: fxmaps.FeatureMaps) -> None:
    half = maps.to(dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in half.values())
    assert half.layer("linear") == maps.layer("linear")
    assert maps.cpu()["linear"].device.type == "cpu"
    arrays = maps.numpy()
    assert isinstance(arrays["linear"], np.ndarray)
    assert np.array_equal(arrays["linear"], maps["linear"].numpy())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_and_load_round_trip(maps: fxmaps.FeatureMaps, tmp_path: Path, suffix: str) -> None:
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="safetensors is optional")
    path = tmp_path / f"maps{suffix}"
    maps.save(path)
    loaded = fxmaps.FeatureMaps.load(path)
    assert list(loaded) == list(maps)
    for name in maps:
        assert torch.equal(loaded[name], maps[name])
        assert torch.equal(loaded.channels(name), maps.channels(name))  # type: ignore[arg-type]
        before, after = maps.layer(name), loaded.layer(name)
        assert (after.kind, after.block, after.out_shape, after.layout) == (
            before.kind, before.block, before.out_shape, before.layout,
        )  # fmt: skip
        assert after.module is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": "fxmaps.FeatureMaps", "layers": [], "maps": {}, "channels": {}, "x": Path()},
        path,
    )
    with pytest.raises(fxmaps.InputError, match=r"is not a feature-maps file written by fxmaps"):
        fxmaps.FeatureMaps.load(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_any_map_name_loads_back(tmp_path: Path, suffix: str) -> None:
    """Map names share no key space with anything else in the file: a map named like a
    channel selection (``channels/a``, ``channel/a``, ``map/a``) saves and loads back."""
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="safetensors is optional")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1))
    x = torch.randn(1, 3, 8, 8)
    names = {"0": "channels/a", "2": "channel/a", "3": "map/a"}
    maps = fxmaps.extract(model, x, layers=names, channels=[1, 0])
    hooked = hook_outputs(model, x, names=list(names))  # the oracle: the modules' own outputs
    path = tmp_path / f"maps{suffix}"
    maps.save(path)
    loaded = fxmaps.FeatureMaps.load(path)
    assert list(loaded) == list(names.values())
    for node, name in names.items():
        assert torch.equal(loaded[name], hooked[node][0][:, [1, 0]])
        assert loaded.channels(name).tolist() == [1, 0]  # type: ignore[union-attr]


def test_a_version_1_safetensors_file_loads(maps: fxmaps.FeatureMaps, tmp_path: Path) -> None:
    """Version 1 keyed tensors by map name and ``channels/<name>``, with no ``map`` facts."""
    safetensors = pytest.importorskip("safetensors.torch", reason="safetensors is optional")
    path = tmp_path / "old.safetensors"
    maps.save(path)
    with safetensors.safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["fxmaps"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    for entry in meta["layers"]:
        del entry["map"]
    old = {key.replace("map/", "", 1).replace("channel/", "channels/", 1): t
           for key, t in tensors.items()}  # fmt: skip
    meta["version"] = 1
    safetensors.save_file(old, str(path), metadata={"fxmaps": json.dumps(meta)})
    loaded = fxmaps.FeatureMaps.load(path)
    assert list(loaded) == list(maps)
    for name in maps:
        assert torch.equal(loaded[name], maps[name])
