"""The package layout: imports point one way along the data flow; import stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fxmaps

PACKAGE = Path(fxmaps.__file__).parent

# Upstream first. A module may import only modules before it (and itself).
ORDER = [
    "errors",
    "_files",
    "_failures",
    "tracing",
    "shapes",
    "classify",
    "graph",
    "_inputs",
    "analyze",
    "select",
    "maps",
    "_aliases",
    "_transforms",
    "_memory",
    "extract",
    "bench",
    "_running",
    "stats",
    "images",
    "datasets",
    "render",
    "zoo",
    "cli",
]


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
    top = {p.stem for p in PACKAGE.glob("*.py")} | packages
    assert top - {"__init__", "__main__", "__pycache__"} == set(ORDER)


def test_import_does_not_load_plotting_libraries() -> None:
    code = "import sys, fxmaps; print([m for m in ('matplotlib', 'graphviz') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_are_exported() -> None:
    for name in fxmaps.__all__:
        assert hasattr(fxmaps, name), name
