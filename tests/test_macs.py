"""Multiply-accumulates per node and in total, and peak activation memory.

Oracles: ``torch.utils.flop_counter.FlopCounterMode`` (its FLOPs are twice the MACs)
on whole torchvision models and on single ops, and the analytic count of a
transformer's matrix products (vit_b_16). Activation memory against a sum done by
hand on small models.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import fxmaps
from fxmaps.errors import InputError


def counted_macs(model: nn.Module, *inputs: torch.Tensor) -> float:
    """MACs of one forward as FlopCounterMode counts them (half its FLOPs)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return counter.get_total_flops() / 2


def built(name: str) -> nn.Module:
    return torchvision.models.get_model(name, weights=None).eval()


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny", "swin_t"])
def test_convnets_and_swin_match_the_flop_counter(name: str) -> None:
    model = built(name)
    image = torch.randn(1, 3, 224, 224)
    graph = fxmaps.analyze(model, image)
    expected = counted_macs(model, image)
    assert expected > 0
    assert graph.macs() == pytest.approx(expected, rel=0.01)
    assert graph.macs() == sum(layer.macs for layer in graph.layers())


def test_vit_b_16_matches_the_analytic_count() -> None:
    """12 blocks of qkv and output projections (4TD²), attention (2T²D) and MLP (8TD²),
    the patch embedding and the head: the fused eval-mode attention counted too."""
    model = built("vit_b_16")
    graph = fxmaps.analyze(model, torch.randn(1, 3, 224, 224))
    tokens, width = 197, 768
    blocks = 12 * (4 * tokens * width**2 + 2 * tokens**2 * width + 8 * tokens * width**2)
    patches = 196 * width * 3 * 16 * 16
    head = width * 1000
    assert graph.macs() == pytest.approx(blocks + patches + head, rel=0.02)
    attention = graph.layers("attention")
    assert len(attention) == 12
    per_block = 4 * tokens * width**2 + 2 * tokens**2 * width
    assert all(layer.macs == per_block for layer in attention)


class _Attention(nn.Module):
    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return self.attention(query, key, value, need_weights=False)[0]


@pytest.mark.parametrize(
    ("batch_first", "kdim", "vdim"), [(True, None, None), (False, None, None), (True, 12, 10)]
)
def test_multihead_attention_counts_as_unfused_whatever_path_runs(
    batch_first: bool, kdim: int | None, vdim: int | None
) -> None:
    attention = nn.MultiheadAttention(16, 4, kdim=kdim, vdim=vdim, batch_first=batch_first)
    model = _Attention(attention).eval()  # self-attention in eval mode: the fused path
    order: Callable[[int, int, int], tuple[int, ...]] = lambda n, length, e: (  # noqa: E731
        (n, length, e) if batch_first else (length, n, e)
    )
    query = torch.randn(*order(3, 5, 16))
    key = torch.randn(*order(3, 7, kdim or 16))
    value = torch.randn(*order(3, 7, vdim or 16))
    if kdim is None:
        key = value = query
    graph = fxmaps.analyze(model, (query, key, value))
    unfused = counted_macs(model.train(), query, key, value)  # dropout 0: the same maps
    assert graph.macs() == unfused
    source = 5 if kdim is None else 7
    analytic = 3 * (2 * 5 * 16 * 16 + source * 16 * ((kdim or 16) + (vdim or 16)))
    assert graph.macs() == analytic + 2 * 3 * 5 * source * 16


class _Ops(nn.Module):
    """One of each counted op, as functions and methods, and a few that count 0."""

    def __init__(self) -> None:
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, groups=2, dilation=2, padding=2)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, groups=2)
        self.line = nn.Conv1d(6, 4, 3)
        self.norm = nn.BatchNorm2d(6)
        self.weight = nn.Parameter(torch.randn(6, 6, 3, 3))
        self.project = nn.Parameter(torch.randn(5, 4))

    def forward(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.up(self.grouped(x)))
        y = F.conv2d(y, self.weight, padding=1)
        y = F.max_pool2d(F.conv_transpose2d(y, self.weight.transpose(0, 1)), 2)
        z = self.line(y.flatten(2)[..., :12])  # (N, 4, 10)
        z = F.linear(z.transpose(1, 2), self.project)  # (N, 10, 5)
        z = z @ b  # (N, 10, 7)
        z = torch.bmm(z, z.transpose(1, 2)) + torch.baddbmm(
            z[:, :, :1], z, b.transpose(1, 2)[:, :, :1]
        )
        z = torch.matmul(z, z.mean(dim=0)) + torch.einsum("nij,njk->nik", z, z)
        return torch.softmax(z, dim=-1).sum() + torch.addmm(z[0], z[0], z[1]).sum()


def test_each_op_matches_the_flop_counter() -> None:
    model = _Ops().eval()
    x, b = torch.randn(2, 4, 9, 9), torch.randn(2, 5, 7)
    graph = fxmaps.analyze(model, (x, b))
    assert graph.macs() == counted_macs(model, x, b)
    counted = {layer.name for layer in graph.layers() if layer.macs}
    assert {"grouped", "up", "line", "conv2d", "conv_transpose2d", "linear", "matmul"} <= counted
    assert {"bmm", "baddbmm", "matmul_1", "einsum", "addmm"} <= counted
    assert graph["norm"].macs == graph["max_pool2d"].macs == graph["softmax"].macs == 0
    # The grouped, dilated conv: each output value reads 4 / 2 channels x 3 x 3.
    assert graph["grouped"].macs == math.prod(graph["grouped"].out_shape) * 2 * 9  # type: ignore[arg-type]


def test_scaled_dot_product_attention() -> None:
    class Attend(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 6)
    graph = fxmaps.analyze(Attend(), (q, k, v))
    assert graph.macs() == counted_macs(Attend(), q, k, v) == 2 * 4 * 10 * 12 * (8 + 6)


def test_without_an_example_input_nothing_is_counted() -> None:
    graph = fxmaps.analyze(nn.Sequential(nn.Conv2d(3, 4, 3)))
    assert all(layer.macs == 0 for layer in graph.layers())
    with pytest.raises(InputError, match="example input"):
        graph.macs()
    with pytest.raises(InputError, match="example input"):
        graph.activation_bytes()
    assert "MACs" not in graph.summary().split("\n", 2)[2]  # no total line


def test_peak_activation_memory_of_a_chain() -> None:
    """Each map lives until its last user: x, then conv+x, then relu+conv, ..."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 4))
    graph = fxmaps.analyze(model, torch.randn(2, 1, 8, 8))
    x, conv, relu, flat, linear = 2 * 64 * 4, 2 * 72 * 4, 2 * 72 * 4, 2 * 72 * 4, 2 * 4 * 4
    steps = [x, x + conv, conv + relu, relu + flat, flat + linear]
    assert graph.activation_bytes() == max(steps) == 1152


class _Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x.double()))  # float64 from here on
        return x.double() + y


def test_peak_activation_memory_keeps_the_skip_alive_and_reads_dtypes() -> None:
    graph = fxmaps.analyze(_Skip(), torch.randn(1, 3, 4, 4))
    x = 48 * 4
    double = 48 * 8
    # x (float32) lives until its second cast; conv, relu and the casts are float64.
    steps = [x, x + double, x + 2 * double, x + 2 * double, x + 2 * double, 3 * double]
    assert graph.activation_bytes() == max(steps)


def test_the_summary_shows_macs_per_row_and_in_total() -> None:
    model = built("resnet18")
    graph = fxmaps.analyze(model, torch.randn(2, 3, 64, 64))
    text = graph.summary()
    header = text.split("\n", 1)[0].split()
    assert header[:7] == ["name", "kind", "type", "output", "shape", "params", "MACs"]
    column = header.index("MACs") - 1  # "output shape" is one column
    cells = [row[column] for row in graph.summary_rows()]
    assert sum(int(cell.replace(",", "")) for cell in cells if cell) == graph.macs()
    assert f"Total MACs: {graph.macs():,}" in text
    assert "for a batch of 2" in text
    expected = counted_macs(model, torch.randn(2, 3, 64, 64))
    assert graph.macs() == pytest.approx(expected, rel=0.01)


def test_the_summary_command_shows_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    from fxmaps.cli import main

    assert main(["summary", "resnet18", "--input-size", "3", "64", "64", "--kinds", "conv"]) == 0
    out = capsys.readouterr().out
    expected = counted_macs(built("resnet18"), torch.randn(1, 3, 64, 64))
    total = next(line for line in out.splitlines() if line.startswith("Total MACs: "))
    assert int(total.split()[2].replace(",", "")) == pytest.approx(expected, rel=0.01)
    assert "for a batch of 1" in total
    assert "Peak activation memory: " in out


class _Router(nn.Module):
    """Data-dependent control flow: fxmaps runs ``forward`` as Python and records its ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > -100:
            y = y @ torch.ones(y.shape[-1], 5)
        return self.head(y.mean((2, 3)))


def test_a_captured_model_counts_its_eager_ops_too() -> None:
    model = _Router().eval()
    x = torch.randn(2, 3, 10, 10)
    graph = fxmaps.analyze(model, x)
    assert graph.eager  # the capture ran, not a symbolic trace
    assert graph.macs() == counted_macs(model, x)
    assert graph["matmul"].macs == 2 * 8 * 8 * 5 * 8


def test_transformers_models_match_the_flop_counter() -> None:
    """GPT-2's projections are transformers' ``Conv1D``; BERT's attention is its own code."""
    transformers = pytest.importorskip("transformers")
    configs = [
        (transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4), transformers.GPT2Model),
        (
            transformers.BertConfig(
                num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128
            ),
            transformers.BertModel,
        ),
    ]
    ids = torch.randint(0, 1000, (2, 16))
    for config, build in configs:
        model = build(config).eval()
        graph = fxmaps.analyze(model, {"input_ids": ids})
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(input_ids=ids)
        assert graph.macs() == counter.get_total_flops() / 2 > 0
