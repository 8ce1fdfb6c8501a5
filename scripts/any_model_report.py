"""Run the zoo of models torch.fx cannot trace whole and publish docs/zoo_any.md.

Each model of ``tests/zoo/any_model.py`` goes through the checks of
``tests/zoo/any_survey.py`` (every conv and linear call a node, its map equal to the
forward hook's clone, the graph drawn, the model unchanged), and the page lists, by
family, what ran as Python where.

    python scripts/any_model_report.py
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import traceback
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.zoo.any_model import CORPUS, AnyModel  # noqa: E402
from tests.zoo.any_survey import Checked, check  # noqa: E402

PAGE = ROOT / "docs" / "zoo_any.md"
_SHOWN = 4  # eager calls named per model


def main() -> int:
    rows: list[tuple[AnyModel, Checked | None, str]] = []
    for entry in CORPUS:
        rows.append(_run(entry))
        checked, error = rows[-1][1], rows[-1][2]
        print(f"{entry.family:13s} {entry.name:40s} {'ok' if checked else error}", flush=True)
    PAGE.write_text(_page(rows))
    print(f"wrote {PAGE}")
    return 0 if all(checked for _, checked, _ in rows) else 1


def _run(entry: AnyModel) -> tuple[AnyModel, Checked | None, str]:
    if entry.requires is not None and importlib.util.find_spec(entry.requires) is None:
        return entry, None, f"{entry.requires} is not installed"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return entry, check(entry), ""
    except Exception as err:  # a row, not the run
        cause = traceback.format_exception_only(err)[-1].strip()
        return entry, None, cause[:200]


def _page(rows: list[tuple[AnyModel, Checked | None, str]]) -> str:
    versions = [f"torch {torch.__version__}"]
    for package in ("torchvision", "transformers", "diffusers"):
        if importlib.util.find_spec(package) is not None:
            versions.append(f"{package} {__import__(package).__version__}")
    lines = [
        "# fxmaps on models torch.fx cannot trace whole",
        "",
        "Each model is built small with random weights (`tests/zoo/any_model.py`; nothing is",
        "downloaded) and given its inputs as it takes them: keyword arguments, a list of",
        "images, two images and an int, a sample and an int timestep. Checked, as",
        "`tests/zoo/test_any_model.py` checks it (`make test-zoo`):",
        "",
        "- every conv and linear module call that forward hooks see while the model runs by",
        "  itself is a node of `analyze(model, inputs)` (by module path and call index);",
        "- `extract` of all of them equals, bit for bit, what the hooks cloned;",
        "- the graph draws, and the model is left as it was.",
        "",
        "*Eager* are the module calls whose own `forward` ran as Python (`g.eager`); everything",
        "they called was traced where torch.fx could follow it. This page comes from",
        "`python scripts/any_model_report.py`.",
        "",
        f"{', '.join(versions)}, Python {platform.python_version()}, {platform.machine()}.",
        "",
        "| family | models | ok | conv and linear calls |",
        "|---|---:|---:|---:|",
    ]
    families: dict[str, list[tuple[Checked | None, str]]] = {}
    for entry, checked, error in rows:
        families.setdefault(entry.family, []).append((checked, error))
    for family, results in families.items():
        ok = [c for c, _ in results if c is not None]
        lines.append(f"| {family} | {len(results)} | {len(ok)} | {sum(c.calls for c in ok)} |")
    lines += ["", "| family | model | calls | nodes | eager calls | what ran as Python | s |"]
    lines.append("|---|---|---:|---:|---:|---|---:|")
    for entry, checked, error in rows:
        lines.append(_row(entry, checked, error))
    return "\n".join(lines) + "\n"


def _row(entry: AnyModel, checked: Checked | None, error: str) -> str:
    if checked is None:
        return f"| {entry.family} | {entry.name} | | | | failed: {error} | |"
    shown = ", ".join(f"`{name}`" for name in checked.eager[:_SHOWN])
    more = f" and {len(checked.eager) - _SHOWN} more" if len(checked.eager) > _SHOWN else ""
    return (
        f"| {entry.family} | {entry.name} | {checked.calls} | {checked.nodes} | "
        f"{len(checked.eager)} | {shown or 'nothing: traced whole'}{more} | "
        f"{checked.seconds:.1f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
