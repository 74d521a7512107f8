"""The layout is the architecture: imports point down the data's path and no two modules import each other.

Every import statement of every module (top level and inside functions: a late import is still a
dependency) is read with ``ast``; nothing is executed. Imports under ``if TYPE_CHECKING:`` are left
out: they name a type for the checker and do not run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "regenheart"

# Sub-packages from the bottom of the data path to the top. A module may import its own layer and
# the layers below, never one above. instruments is a pure leaf library that any layer may use.
LAYERS = ["protocol", "store", "capture", "synth", "derive", "stats", "report", "exchange", "web", "cli"]
LEAVES = {"instruments"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                 for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("regenheart"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("regenheart"):
                # ``from package import submodule`` depends on the submodule, not on the package's __init__
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    found.add(full if full in modules else module)
    return found


def _graph() -> dict[str, set[str]]:
    files = {(_module_name(p)): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path, set(files)) if m in files and m != name}
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_two_modules_import_each_other():
    graph = _graph()
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, set())})
    assert not mutual, f"modules importing each other: {mutual}"


def test_imports_point_down_the_data_path():
    wrong = []
    for module, deps in _graph().items():
        mine = _layer(module)
        if mine not in LAYERS:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs in LAYERS and LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports pointing up the data path:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaf_libraries_import_nothing_of_ours(leaf):
    graph = _graph()
    outside = sorted(f"{m} -> {d}" for m, deps in graph.items() if _layer(m) == leaf
                     for d in deps if _layer(d) != leaf)
    assert not outside, outside
