"""Capture: models torch.fx cannot follow, run once and traced wherever it can, then extracted
the same way. Inputs in every form the model takes; what cannot line up fails clearly."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import fxmaps
from fxmaps.cli import main
from tests.oracles import assert_unchanged, hook_outputs, hooked, snapshot


class Keywords(nn.Module):
    """Takes keyword arguments, one of them not a tensor, and returns a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, scale: float = 1.0
    ) -> dict[str, torch.Tensor]:
        hidden = self.proj(self.embed(input_ids)) * attention_mask[..., None] * scale
        for _ in range(int(attention_mask.sum() > 0) + 1):  # a loop on values: not traceable
            hidden = torch.relu(hidden)
        return {"logits": self.head(hidden.mean(1)), "hidden": hidden}


class Images(nn.Module):
    """Takes a list of images, as torchvision's detectors do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.conv(image[None])[0] for image in images]


class Branch(nn.Module):
    """Takes one of two paths by the sign of its input's mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.relu() if y.mean() > 0 else y.sigmoid() + 1


def _ids() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 20, (2, 5), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_keyword_inputs_with_a_value_are_captured_exactly() -> None:
    model = Keywords().eval()
    inputs = fxmaps.Inputs(kwargs={**_ids(), "scale": 0.5})
    before = snapshot(model)
    graph = fxmaps.analyze(model, inputs)
    assert [region.name for region in graph.eager] == ["Keywords"]
    assert [layer.name for layer in graph.layers("input")] == ["input_ids", "attention_mask"]
    maps = fxmaps.extract(graph, inputs, layers=["embed", "proj", "head", "output"])
    with hooked(model, ["embed", "proj", "head"]) as seen, torch.no_grad():
        expected = inputs.call(model)
    for name in ("embed", "proj", "head"):
        assert torch.equal(maps[name], seen[name][0])
    for key, tensor in expected.items():  # a dict output: a map for each tensor in it
        assert torch.equal(maps[f"output[{key!r}]"], tensor), key
    assert not maps.skipped
    again = fxmaps.extract(model, dict(inputs.kwargs), layers="head")  # analysed anew
    assert torch.equal(again["head"], expected["logits"])
    assert_unchanged(model, before)


def test_a_dict_is_keyword_arguments_and_a_list_one_argument() -> None:
    keywords = fxmaps.analyze(Keywords().eval(), _ids())
    assert {layer.name for layer in keywords.layers("input")} == {"input_ids", "attention_mask"}
    model = Images().eval()
    images = [torch.rand(3, 8, 8), torch.rand(3, 6, 10)]
    graph = fxmaps.analyze(model, images)
    assert [layer.name for layer in graph.layers("input")] == ["images.0", "images.1"]
    assert [layer.name for layer in graph.layers("conv")] == ["conv", "conv_1"]
    maps = fxmaps.extract(graph, images, layers="conv")
    with hooked(model, ["conv"]) as seen, torch.no_grad():
        model(images)
    hooked_outputs = seen["conv"]
    assert all(torch.equal(maps[n], out) for n, out in zip(maps, hooked_outputs, strict=True))
    assert [tuple(m.shape) for m in maps.values()] == [(1, 4, 8, 8), (1, 4, 6, 10)]


def test_each_call_takes_its_own_path_and_a_mismatch_is_refused() -> None:
    model = Branch().eval()
    positive = torch.full((1, 3, 4, 4), 5.0)
    model.conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        model.conv.weight.fill_(0.1)
    graph = fxmaps.analyze(model, positive)
    assert "relu" in graph
    assert "sigmoid" not in graph
    # The conv's map follows either branch: its call is the same.
    for x in (positive, -positive):
        maps = fxmaps.extract(graph, x, layers=["conv"])
        assert torch.equal(maps["conv"], hook_outputs(model, x)["conv"][0])
    # An op of the branch the input does not take cannot be lined up: refused, with the fix.
    with pytest.raises(
        fxmaps.FxmapsError,
        match=r"ran other ops than when it was analysed \(op 2: sigmoid where relu was, at "
        r".*test_capture.py:\d+ in forward: return y.relu\(\) if",
    ):
        fxmaps.extract(graph, -positive, layers=["relu"])


def test_a_failure_while_capturing_names_the_module_and_the_line() -> None:
    model = Keywords().eval()
    bad = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 7)}
    with pytest.raises(fxmaps.ShapeError, match=r"Keywords failed while it ran on the example "
                       r"input .* in Keywords's own forward at .*test_capture.py:\d+ in forward: "
                       r"hidden = self.proj") as info:  # fmt: skip
        fxmaps.analyze(model, bad)
    assert info.value.node is None


def test_without_an_input_the_error_says_to_pass_one() -> None:
    with pytest.raises(fxmaps.TraceError, match=r"pass an example input") as info:
        fxmaps.analyze(Branch())
    assert info.value.module == ""  # the model's own forward
    assert "y.mean() > 0" in info.value.location


def test_feature_extractor_takes_the_model_s_arguments() -> None:
    model = Keywords().eval()
    graph = fxmaps.analyze(model, _ids())
    extractor = fxmaps.FeatureExtractor(graph, ["proj"])
    ids = _ids()
    with torch.no_grad():
        maps = extractor(**ids)
    with hooked(model, ["proj"]) as seen, torch.no_grad():
        model(**ids)
    assert torch.equal(maps["proj"], seen["proj"][0])


class _Tokens(Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(5) + index
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_channel_stats_of_keyword_datasets() -> None:
    model = Keywords().eval()
    stats = fxmaps.channel_stats(model, _Tokens(), layers=["head"], batch_size=4, progress=False)
    items = [_Tokens()[i] for i in range(6)]
    everything = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    with torch.no_grad():
        logits = model(**everything)["logits"]
    torch.testing.assert_close(stats["head"].mean, logits.double().mean(0))


def test_report_of_keyword_inputs(tmp_path: Path) -> None:
    page = fxmaps.report(Keywords().eval(), _ids(), tmp_path / "page.html", layers="linear")
    text = page.read_text()
    assert "input_ids=2×5 int64" in text
    assert "ran as Python" in text
    assert "the input image" not in text


def test_a_factory_gives_its_example_input_to_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "from tests.test_capture import Keywords\n"
        "def build():\n"
        "    ids = torch.zeros(1, 4, dtype=torch.long)\n"
        "    return Keywords().eval(), {'input_ids': ids, 'attention_mask': torch.ones(1, 4)}\n"
    )
    assert main(["summary", f"{tmp_path / 'nets.py'}:build"]) == 0
    out = capsys.readouterr().out
    assert "input_ids" in out
    assert "Eager (ran as Python): Keywords" in out


@pytest.mark.parametrize("captured", [False, True], ids=["traced", "captured"])
def test_what_extraction_keeps_goes_with_its_graph(captured: bool) -> None:
    model = Branch().eval() if captured else nn.Sequential(nn.Conv2d(3, 3, 1)).eval()
    x = torch.rand(1, 3, 4, 4)
    graph = fxmaps.analyze(model, x)
    assert (graph.capture is not None) is captured
    fxmaps.extract(graph, x, layers="conv")
    alive = weakref.ref(graph)
    del graph
    gc.collect()
    assert alive() is None


class _Scaled(nn.Module):
    """Traceable, inside a model that is not: its calls may come positionally or by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.conv(x) * scale


class _Caller(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scaled = _Scaled()

    def forward(self, x: torch.Tensor, by_keyword: bool = False) -> torch.Tensor:
        if x.mean() > -100:  # not traceable: this forward is captured
            x = self.scaled(x, scale=2.0) if by_keyword else self.scaled(x, 2.0)
        return x


def test_a_region_called_in_another_form_runs_its_trace() -> None:
    model = _Caller().eval()
    x = torch.randn(1, 3, 4, 4)
    graph = fxmaps.analyze(model, x)
    assert graph.capture is not None
    for inputs in (fxmaps.Inputs((x,), {"by_keyword": True}), fxmaps.Inputs((x,))):
        maps = fxmaps.extract(graph, inputs, layers=["scaled.conv", "scaled.mul"])
        with hooked(model, ["scaled.conv", "scaled"]) as seen, torch.no_grad():
            inputs.call(model)
        assert torch.equal(maps["scaled.conv"], seen["scaled.conv"][0])
        assert torch.equal(maps["scaled.mul"], seen["scaled"][0])


class _Overwrites(nn.Module):
    """Runs as Python, and writes into its conv's output after using it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if x.mean() > -100:
            z = y.sigmoid()
            y.add_(1)  # the conv's map must stay what the conv made
            return z * y
        return y


def test_maps_overwritten_later_in_python_are_copied_without_losing_the_ops() -> None:
    model = _Overwrites().eval()
    x = torch.randn(1, 3, 4, 4)
    graph = fxmaps.analyze(model, x)
    sigmoid = next(layer.name for layer in graph.layers() if layer.target == "sigmoid")
    maps = fxmaps.extract(graph, x, layers=["conv", sigmoid])
    with hooked(model, ["conv"]) as seen, torch.no_grad():
        model(x)
    assert torch.equal(maps["conv"], seen["conv"][0])
    assert torch.equal(maps[sigmoid], seen["conv"][0].sigmoid())
