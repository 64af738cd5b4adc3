"""The house's shape, checked: the rooms import each other in one direction
only, and every package states what it is and exactly what it exports
(httpx tests its ``__all__`` the same way). docs/architecture.md draws it."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# room -> the rooms it may import (core at the bottom, orchestration on top; nothing imports orchestration)
ALLOWED = {
    "core": set(),
    "environment": {"core"},
    "agents": {"core", "environment"},
    "training": {"core", "environment", "agents"},
    "evaluation": {"core", "environment", "agents"},
    "inspection": {"core", "environment", "evaluation"},
    "orchestration": {"core", "environment", "agents", "training", "evaluation", "inspection", "conf"},
    "conf": set(),
}


def _imported_rooms(path: Path, room: str) -> set[tuple[str, int]]:
    """(room, line) of every import of another room in one module."""
    package = path.parent.relative_to(ROOT).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve against the module's package
            base = package[: len(package) - node.level + 1]
            names = [".".join(("aloesim", *base, *(node.module.split(".") if node.module else ())))]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "aloesim" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] != room:
                found.add((parts[1], node.lineno))
    return found


def test_rooms_import_in_one_direction() -> None:
    wrong = []
    for room, allowed in ALLOWED.items():
        for path in sorted((ROOT / room).rglob("*.py")):
            for target, line in _imported_rooms(path, room):
                if target not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_direction_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = ROOT / "environment" / "_probe_for_test.py"
    module.write_text("from ..orchestration import cli\nfrom aloesim.agents import gateway\n", encoding="utf-8")
    try:
        assert {t for t, _ in _imported_rooms(module, "environment")} == {"orchestration", "agents"}
    finally:
        module.unlink()


def _packages() -> list[str]:
    names = []
    for room in ALLOWED:
        for init in sorted((ROOT / room).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT).parts
            names.append(".".join(("aloesim", *parts)))
    return names


@pytest.mark.parametrize("name", [n for n in _packages() if not n.startswith("aloesim.conf.")])
def test_every_package_says_what_it_is_and_exports_exactly_its_all(name: str) -> None:
    module = importlib.import_module(name)
    doc = (module.__doc__ or "").strip()
    assert len(doc) > 40 and "TODO" not in doc, f"{name}: a one-paragraph docstring"
    exported = getattr(module, "__all__", None)
    if name == "aloesim.conf":  # YAML files only
        return
    assert exported is not None, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    public = {n for n, v in vars(module).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public <= set(exported), f"{name} binds public names outside __all__: {sorted(public - set(exported))}"


# Test files that may put a folder on sys.path themselves, each with its reason. None need to: pyproject's
# pytest ``pythonpath`` puts the repository root (``tests.support``) and ``benchmarks/`` (the scripts tests
# import: latency_server, _common) there once, for every test.
SYS_PATH_ALLOWED: dict[str, str] = {}


def _sys_path_edits(source: str) -> list[int]:
    """Lines of ``sys.path.insert/append/extend(...)`` and ``sys.path[...] = ...`` in one module."""
    def is_sys_path(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("insert", "append", "extend") and is_sys_path(node.func.value)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets):
                lines.append(node.lineno)
    return sorted(lines)


def test_tests_leave_sys_path_alone() -> None:
    edits = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in SYS_PATH_ALLOWED:
            edits += [f"{rel}:{line}" for line in _sys_path_edits(path.read_text(encoding="utf-8"))]
    assert not edits, "tests edit sys.path (import through tests.support or pyproject's pythonpath):\n" + \
        "\n".join(edits)


def test_the_sys_path_check_sees_every_edit() -> None:
    source = ("import sys\nsys.path.insert(0, 'x')\nsys.path.append('y')\nsys.path += ['z']\n"
              "sys.path[:0] = ['w']\nsys.path = []\nprint(sys.path)\nitems = []\nitems.insert(0, 1)\n")
    assert _sys_path_edits(source) == [2, 3, 4, 5, 6]


def test_no_package_module_is_over_400_lines() -> None:
    """Small modules: a module that grows past 400 lines is split by concept (issue 15)."""
    long = [f"{p.relative_to(ROOT)}: {n} lines" for room in ALLOWED for p in sorted((ROOT / room).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, "\n".join(long)
