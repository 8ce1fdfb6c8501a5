"""Every model of every zoo through ``analyze`` -> ``extract`` -> ``render_graph``.

The checks are those of :mod:`tests.zoo.survey` (oracles: the model's own output and
forward hooks on each checked module call); ``scripts/zoo_report.py`` runs the same
checks to write ``docs/zoo.md``. One model per zoo runs by default; ``make test-zoo``
(``pytest -m zoo``) runs them all. Test ids are the models' names.
"""

from __future__ import annotations

import pytest

from tests.zoo.catalog import ZooModel, zoo_models
from tests.zoo.survey import Record, survey

DEFAULT_SAMPLE = frozenset(
    {
        ("classification", "resnet18"),
        ("segmentation", "lraspp_mobilenet_v3_large"),
        ("timm", "efficientvit_m0"),  # opaque LocalWindowAttention modules
    }
)


def _params(zoo: str) -> list[object]:
    return [
        pytest.param(
            entry,
            id=entry.name,
            marks=() if (zoo, entry.name) in DEFAULT_SAMPLE else pytest.mark.zoo,
        )
        for entry in zoo_models(zoo)
    ]


def _checked(entry: ZooModel) -> Record:
    record = survey(entry, raise_errors=True)
    assert record.ok
    assert record.nodes > 0
    assert record.collapsed_nodes > 0
    return record


def test_default_sample_is_in_the_zoos() -> None:
    listed = {(entry.zoo, entry.name) for zoo, _ in DEFAULT_SAMPLE for entry in zoo_models(zoo)}
    assert listed >= DEFAULT_SAMPLE


@pytest.mark.parametrize("entry", _params("classification"))
def test_classification(entry: ZooModel) -> None:
    record = _checked(entry)
    assert record.opaque == []  # torchvision's own models trace completely


@pytest.mark.parametrize("entry", _params("detection"))
def test_detection_backbone(entry: ZooModel) -> None:
    record = _checked(entry)
    assert record.conv > 0


@pytest.mark.parametrize("entry", _params("segmentation"))
def test_segmentation(entry: ZooModel) -> None:
    record = _checked(entry)
    assert record.conv > 0


@pytest.mark.parametrize("entry", _params("video"))
def test_video(entry: ZooModel) -> None:
    record = _checked(entry)
    assert len(record.input_shape) == 5  # (N, C, T, H, W)


@pytest.mark.parametrize("entry", _params("timm"))
def test_timm(entry: ZooModel) -> None:
    pytest.importorskip("timm", reason="timm is an optional extra: pip install fxmaps[timm]")
    _checked(entry)
