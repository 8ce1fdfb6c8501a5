"""The package layout: imports point one way along the data flow; import stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fxmaps

PACKAGE = Path(fxmaps.__file__).parent

# The stages, upstream first. A module may import only from its own stage and stages
# before it. `errors`, `facts`, `files` and `progress` are cross-cutting; `__init__` and
# `__main__` re-export.
ORDER = [
    "errors",
    "facts",
    "files",
    "progress",
    "trace",
    "classify",
    "graph",
    "extract",
    "attribute",
    "stats",
    "bench",
    "sources",
    "render",
    "report",
    "cli",
]
LOOSE = {"__init__", "__main__", "errors", "facts", "files", "progress"}
DISPLAY_METHODS = frozenset({"summary", "summary_rows", "summary_footer"})
"""A record's methods that show it: they may import ``render`` lazily, inside the method."""


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
        for node, function in _imports(ast.parse(path.read_text())):
            target = node.module.removeprefix("fxmaps.")  # type: ignore[union-attr]
            if _is_display(function) and target.split(".")[0] == "render":
                assert function is not None
                assert _imports_inside(function) == [node], f"{name}: one import, of render"
                continue
            assert _stage(target) <= stage, f"{name} imports {target}"


def _imports(tree: ast.Module) -> list[tuple[ast.ImportFrom, ast.FunctionDef | None]]:
    """Every ``from fxmaps... import``, with the function it sits in (``None``: module level)."""
    found: list[tuple[ast.ImportFrom, ast.FunctionDef | None]] = []

    def visit(node: ast.AST, function: ast.FunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("fxmaps."):
                found.append((child, function))
            visit(child, child if isinstance(child, ast.FunctionDef) else function)

    visit(tree, None)
    return found


def _is_display(function: ast.FunctionDef | None) -> bool:
    if function is None:
        return False
    name = function.name
    return name in DISPLAY_METHODS or (name.startswith("_repr_") and name.endswith("_"))


def _imports_inside(function: ast.FunctionDef) -> list[ast.ImportFrom]:
    return [node for node in ast.walk(function) if isinstance(node, ast.ImportFrom)]


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
