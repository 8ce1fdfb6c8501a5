"""In-place ReLUs run out of place into resident memory: the maps stay equal to the forward
hooks' clones bit for bit, the memory is reused only once the previous result is let go,
and never while a user holds any part of it."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import fxmaps
from fxmaps.extract.resident import ResidentReLU
from tests import models as toy
from tests.oracles import hook_outputs

# resnet18's BatchNorm outputs are overwritten by in-place ReLUs; `relu` is called twice
# per block (`layer1.0.relu`, then `layer1.0.relu_1`).
CHOSEN = {  # map -> (module, call)
    "bn1": ("bn1", 0),
    "relu": ("relu", 0),
    "layer1.0.bn1": ("layer1.0.bn1", 0),
    "layer1.0.relu": ("layer1.0.relu", 0),
    "layer1.0.bn2": ("layer1.0.bn2", 0),
    "layer1.0.relu_1": ("layer1.0.relu", 1),
    "layer2.1.bn1": ("layer2.1.bn1", 0),
    "layer2.1.relu": ("layer2.1.relu", 0),
    "layer2.1.relu_1": ("layer2.1.relu", 1),
}
# The ReLUs that would overwrite a chosen map; the second ReLU of a block overwrites the
# residual add's output, which is not chosen, so it stays in place.
RELUS = ["relu", "layer1.0.relu", "layer2.1.relu"]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.resnet18().eval()


def batch(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def expected(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen = hook_outputs(model, x, names={module for module, _ in CHOSEN.values()})
    return {name: seen[module][call] for name, (module, call) in CHOSEN.items()}


def assert_maps(maps: Any, oracle: dict[str, torch.Tensor]) -> None:
    assert list(maps) == list(oracle)
    for name, value in oracle.items():
        assert torch.equal(maps[name], value), name
        assert maps[name].stride() == value.stride(), name


def run(extractor: fxmaps.FeatureExtractor, x: torch.Tensor) -> Any:
    with torch.no_grad():
        return extractor(x)


def test_relus_run_into_resident_memory(resnet: nn.Module) -> None:
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(resnet), list(CHOSEN))
    assert set(extractor.out_of_place) == set(RELUS)
    residents = [m for m in extractor.graph_module.modules() if isinstance(m, ResidentReLU)]
    assert len(residents) == len(RELUS)


def test_released_results_are_reused_and_maps_stay_exact(resnet: nn.Module) -> None:
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(resnet), list(CHOSEN))
    first = run(extractor, batch(0))
    assert_maps(first, expected(resnet, batch(0)))
    pointers = {name: first[name].data_ptr() for name in RELUS}
    del first
    gc.collect()
    for seed in (1, 2):
        again = run(extractor, batch(seed))
        assert_maps(again, expected(resnet, batch(seed)))
        assert {name: again[name].data_ptr() for name in RELUS} == pointers  # reused
        del again


# What a user may keep of a result: all of it, one map, a view of one, an array of one.
KEEPERS: dict[str, Callable[[Any], Any]] = {
    "maps": lambda maps: maps,
    "one map": lambda maps: maps["layer1.0.relu"],
    "a view": lambda maps: maps["layer1.0.relu"][1, :2],
    "numpy": lambda maps: maps["layer1.0.relu"].numpy(),
    "a dict of maps": lambda maps: dict(maps),
}


def the_relu(held: Any) -> torch.Tensor:
    """What was kept of ``layer1.0.relu``'s map, as a tensor."""
    return torch.as_tensor(held["layer1.0.relu"] if isinstance(held, Mapping) else held)


@pytest.mark.parametrize("keep", list(KEEPERS.values()), ids=list(KEEPERS))
def test_memory_a_user_holds_is_never_overwritten(
    resnet: nn.Module, keep: Callable[[Any], Any]
) -> None:
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(resnet), list(CHOSEN))
    run(extractor, batch(0))  # the memory is resident now
    first = run(extractor, batch(1))
    held = keep(first)
    before = the_relu(held).clone()
    pointer = first["layer1.0.relu"].data_ptr()
    del first
    gc.collect()
    for seed in (2, 3):
        again = run(extractor, batch(seed))
        assert_maps(again, expected(resnet, batch(seed)))
        assert again["layer1.0.relu"].data_ptr() != pointer
        del again
    assert torch.equal(the_relu(held), before)


def test_release_memory_lets_go(resnet: nn.Module) -> None:
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(resnet), list(CHOSEN))
    run(extractor, batch(0))
    residents = [m for m in extractor.graph_module.modules() if isinstance(m, ResidentReLU)]
    kept = [m._storage for m in residents]
    assert all(storage is not None for storage in kept)
    extractor.release_memory()
    use_count = torch._C._storage_Use_Count
    assert [use_count(storage._cdata) for storage in kept] == [1] * len(kept)  # ours only
    assert all(m._storage is None for m in residents)
    assert_maps(run(extractor, batch(1)), expected(resnet, batch(1)))


def test_with_autograd_the_relus_run_as_torch_runs_them(resnet: nn.Module) -> None:
    extractor = fxmaps.FeatureExtractor(fxmaps.analyze(resnet), list(CHOSEN))
    x = batch(0).requires_grad_()
    maps = extractor(x)  # gradients on: `out=` cannot be used
    assert maps["layer1.0.relu"].grad_fn is not None
    assert_maps({k: v.detach() for k, v in maps.items()}, expected(resnet, batch(0)))


def test_functional_relu_inplace_and_repeated_calls() -> None:
    model = toy.InplaceOps().eval()
    graph = fxmaps.analyze(model)
    extractor = fxmaps.FeatureExtractor(graph, "conv")
    for seed in range(3):
        x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        seen = hook_outputs(model, x)
        maps = run(extractor, x)
        for name in ("conv1", "conv2", "conv3", "conv4"):
            assert torch.equal(maps[name], seen[name][0]), name
