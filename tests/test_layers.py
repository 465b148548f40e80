"""The layering of ``ltxserve``: imports point downward only, and no module imports itself in a loop.

Every import counts, type-only (``if TYPE_CHECKING:``) and function-local ones included: a
lazy import hides a knot, it does not untie it. Imports are read with ``ast`` (nothing is
executed), so the test is fast and fails on the first upward edge it finds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ltxserve"

#: Top to bottom. A package may import packages of lower layers only; packages of one layer do
#: not import each other. ``ltxserve`` itself (``__init__``: the version) is the bottom.
LAYERS: list[set[str]] = [
    {"cli", "manifests", "testing"},  # entry points: commands, generators, test and bench helpers
    {"api"},
    {"runtime"},
    {"worker"},
    {"service"},
    {"queue", "delivery", "protocol"},
    {"engine", "db", "blobs", "net"},
    {"media", "safety", "tracing"},
    {"config"},
    {"presets", "logs", "metrics"},
    {""},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    # Alembic revision scripts are loaded by alembic, not imported by anything.
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``ltxserve`` modules ``path`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m == "ltxserve" or m.startswith("ltxserve.")}


def top_package(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_package_has_a_layer() -> None:
    missing = {top_package(m) for m in modules()} - set(RANK)
    assert not missing, f"packages without a layer in LAYERS: {sorted(missing)}"


def test_imports_point_downward() -> None:
    upward = []
    for module, targets in graph().items():
        here = top_package(module)
        for target in targets:
            there = top_package(target)
            if there != here and RANK[there] <= RANK[here]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not point to a lower layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over modules: any component of two or more is a loop."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not loops, f"import loops: {loops}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ltxserve.api import rest\n", {"ltxserve.api.rest"}),
        ("if TYPE_CHECKING:\n    from ltxserve.config import Settings\n", {"ltxserve.config"}),
        ("def f():\n    import ltxserve.engine.tiny\n", {"ltxserve.engine.tiny"}),
        ("from .base import X\n", {"ltxserve.db.base"}),
    ],
)
def test_the_parser_sees_every_kind_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"ltxserve.api.rest", "ltxserve.engine.tiny", "ltxserve.db.base"}
    assert imports("ltxserve.db.mod", path, known) == expected
