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
