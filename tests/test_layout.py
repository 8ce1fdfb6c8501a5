"""The package layout: imports point one way along the data flow; import stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fxmaps

PACKAGE = Path(fxmaps.__file__).parent

# The stages, upstream first. A module may import only from its own stage and stages
# before it. `errors` and `files` are cross-cutting; `__init__` and `__main__` re-export.
ORDER = [
    "errors",
    "files",
    "trace",
    "classify",
    "graph",
    "extract",
    "stats",
    "bench",
    "sources",
    "render",
    "report",
    "cli",
]
LOOSE = {"__init__", "__main__", "errors", "files"}


def _stage(module: str) -> int:
    first = module.split(".")[0]
    return ORDER.index(first)


def test_imports_point_downstream_to_upstream() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(relative.parts)
        if relative.name in ("__init__", "__main__") and len(relative.parts) == 1:
            continue
        stage = _stage(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fxmaps."):
                target = node.module.removeprefix("fxmaps.")  # type: ignore[union-attr]
                assert _stage(target) <= stage, f"{name} imports {target}"


def test_every_module_has_a_stage() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules <= LOOSE, f"modules outside a stage package: {sorted(modules - LOOSE)}"
    assert packages | (modules - {"__init__", "__main__"}) == set(ORDER)


def test_import_does_not_load_plotting_libraries() -> None:
    code = "import sys, fxmaps; print([m for m in ('matplotlib', 'graphviz') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_are_exported() -> None:
    for name in fxmaps.__all__:
        assert hasattr(fxmaps, name), name
