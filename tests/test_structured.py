"""Nodes whose output is a tuple, list or dict: a map for each tensor in it, never dropped
without a word."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxmaps
from tests.oracles import hook_outputs


class Recurrent(nn.Module):
    """An LSTM, a GRU, attention with its weights and chunk: every kind of tuple output."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.gru = nn.GRU(6, 6, batch_first=True)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, (h, _) = self.lstm(x)
        z, _ = self.gru(y)
        a, _ = self.attn(z, z, z)
        left, right = torch.chunk(a, 2, dim=-1)
        return self.fc(left[:, -1] * right[:, -1]) + h[0, :, :2]


@pytest.fixture(scope="module")
def recurrent() -> tuple[nn.Module, torch.Tensor, fxmaps.ModelGraph]:
    torch.manual_seed(0)
    model = Recurrent().eval()
    x = torch.randn(2, 5, 4)
    return model, x, fxmaps.analyze(model, x)


def _flat(key: str, value: object) -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {key: value}
    assert isinstance(value, tuple)
    return {k: v for i, item in enumerate(value) for k, v in _flat(f"{key}[{i}]", item).items()}


def test_tuple_outputs_give_a_map_per_tensor_equal_to_hooks(
    recurrent: tuple[nn.Module, torch.Tensor, fxmaps.ModelGraph],
) -> None:
    model, x, g = recurrent
    seen = hook_outputs(model, x)
    maps = fxmaps.extract(g, x, layers=["lstm", "gru", "attn", "fc"])
    expected = {
        k: v
        for name in ("lstm", "gru", "attn", "fc")
        for k, v in _flat(name, seen[name][0]).items()
    }
    assert list(maps) == list(expected)
    assert "lstm[1][1]" in maps  # the cell state, nested
    for key, tensor in expected.items():
        assert torch.equal(maps[key], tensor), key
        assert maps.layer(key).name == key.partition("[")[0]
    assert not maps.skipped


def test_chunk_results_are_maps(
    recurrent: tuple[nn.Module, torch.Tensor, fxmaps.ModelGraph],
) -> None:
    model, x, g = recurrent
    attended = hook_outputs(model, x, names=["attn"])["attn"][0][0]
    maps = fxmaps.extract(g, x, layers="chunk")
    for index, part in enumerate(torch.chunk(attended, 2, dim=-1)):
        assert torch.equal(maps[f"chunk[{index}]"], part)


def test_transforms_apply_to_each_tensor(
    recurrent: tuple[nn.Module, torch.Tensor, fxmaps.ModelGraph],
) -> None:
    model, x, g = recurrent
    seen = hook_outputs(model, x, names=["lstm"])["lstm"][0]
    plain = fxmaps.extract(g, x, layers=["lstm"], dtype=torch.float16)
    for key, tensor in _flat("lstm", seen).items():
        assert plain[key].dtype == torch.float16
        assert torch.equal(plain[key], tensor.half())


def test_a_node_with_no_tensor_is_skipped_with_a_warning() -> None:
    class Sized(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) * x.size(1)

    model = Sized().eval()
    x = torch.randn(2, 3, 4)
    g = fxmaps.analyze(model, x)
    size = next(layer.name for layer in g.layers() if layer.target == "size")
    with pytest.warns(
        fxmaps.FxmapsWarning, match=rf"no map for '{size}': the output holds no tensor"
    ):
        maps = fxmaps.extract(g, x, layers=[size, "flatten"])
    assert maps.skipped == (size,)
    assert list(maps) == ["flatten"]
