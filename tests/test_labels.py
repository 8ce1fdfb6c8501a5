"""Which weights a model has, said wherever the command line shows its filters and maps.

The oracle is how the model was built: with nothing loaded it has random weights; with
``--weights FILE`` the file's; with ``DEFAULT`` the pretrained enum torchvision names.
Figures are caught as the commands make them (their titles are text, the PNGs not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from matplotlib.figure import Figure
from torch import nn

from fxmaps.cli import commands, main
from fxmaps.sources import load_model
from fxmaps.sources.models import RANDOM_WEIGHTS
from tests.test_cli_render import SIZE, TOY

RANDOM = "random weights (untrained)"


def titles(figure: Figure) -> str:
    return "\n".join(ax.get_title(loc=loc) for ax in figure.axes for loc in ("center", "left"))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure the maps and filters commands draw."""
    made: list[Figure] = []

    def keep(draw: Any) -> Any:
        def drawn(*args: Any, **kwargs: Any) -> Figure:
            made.append(draw(*args, **kwargs))
            return made[-1]

        return drawn

    for name in ("plot_feature_maps", "plot_filters"):
        monkeypatch.setattr(commands, name, keep(getattr(commands, name)))
    return made


def saved_weights(tmp_path: Path) -> Path:
    path = tmp_path / "trained.pt"
    torch.save(load_model(TOY).model.state_dict(), path)
    return path


def test_loaded_models_say_which_weights_they_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert RANDOM_WEIGHTS == RANDOM
    assert load_model("resnet18").weights == RANDOM
    assert load_model(TOY).weights.startswith(RANDOM)  # a class of the user's: nothing loaded
    assert load_model(TOY, weights=saved_weights(tmp_path)).weights == "weights from trained.pt"
    built: list[Any] = []

    def offline(name: str, weights: Any = None) -> nn.Module:  # no download: record the ask
        built.append(weights)
        return torchvision.models.resnet18()

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    pretrained = load_model("resnet18", weights="DEFAULT")
    assert built == ["DEFAULT"]
    assert pretrained.weights == "pretrained weights ResNet18_Weights.IMAGENET1K_V1"


@pytest.mark.parametrize("weights", [None, "file"])
def test_maps_and_filters_titles_name_the_weights(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, figures: list[Figure], weights: str | None
) -> None:
    given = ["--weights", str(saved_weights(tmp_path))] if weights else []
    label = "weights from trained.pt" if weights else RANDOM
    argv = ["maps", TOY, *SIZE, *given, "--layers", "conv1", "-o", str(tmp_path / "maps")]
    assert main(argv) == 0
    assert main(["filters", TOY, *given, "-o", str(tmp_path / "filters.png")]) == 0
    capsys.readouterr()
    assert len(figures) == 2
    for figure in figures:
        assert label in titles(figure)
        assert (RANDOM in titles(figure)) == (weights is None)


def test_the_report_header_names_the_weights(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["report", TOY, *SIZE, "--layers", "conv1", "--max-maps", "2"]
    assert main([*argv, "-o", str(tmp_path / "random.html")]) == 0
    weights = saved_weights(tmp_path)
    assert main([*argv, "--weights", str(weights), "-o", str(tmp_path / "file.html")]) == 0
    capsys.readouterr()
    header = (tmp_path / "random.html").read_text().split("</header>")[0]
    assert f"{RANDOM} unless CifarResNet loads its own" in header
    header = (tmp_path / "file.html").read_text().split("</header>")[0]
    assert "weights from trained.pt" in header
    assert RANDOM not in header
