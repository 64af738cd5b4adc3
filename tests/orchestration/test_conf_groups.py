"""Every config group option composes with every command that uses the group,
and every key in conf/ carries a comment (inline, or on the line above)."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from aloesim.core import group_options
from aloesim.orchestration import compose_config

CONF = resources.files("aloesim.conf")
COMMANDS = sorted(p.name[:-5] for p in CONF.iterdir() if p.name.endswith(".yaml") and p.name != "base.yaml")


def _groups_of(command: str) -> list[str]:
    defaults = yaml.safe_load(CONF.joinpath(f"{command}.yaml").read_text()).get("defaults", [])
    return [next(iter(d)) for d in defaults if isinstance(d, dict)]


CASES = [(cmd, group, option) for cmd in COMMANDS for group in _groups_of(cmd) for option in group_options(group)]


def test_every_group_is_used_by_some_command() -> None:
    used = {group for _, group, _ in CASES}
    folders = {p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert folders - {"__pycache__"} <= used


@pytest.mark.parametrize(("command", "group", "option"), CASES, ids=[f"{c}:{g}={o}" for c, g, o in CASES])
def test_group_option_composes(command: str, group: str, option: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY", "sk-test"))
    cfg = compose_config(command, [f"{group}={option}"])
    assert "db" in cfg


KEY = re.compile(r"^\s*([A-Za-z_][\w./@-]*):(.*)$")


@pytest.mark.parametrize("path", sorted(str(p) for p in CONF.rglob("*.yaml")) if hasattr(CONF, "rglob") else [])
def test_every_key_has_a_comment(path: str) -> None:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    missing = []
    block: int | None = None  # indentation of the key whose block string (|, |-, >) the lines belong to
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if block is not None and (not line.strip() or indent > block):
            continue  # text of a block string (a prompt), not a key
        block = None
        m = KEY.match(line)
        if m and m.group(2).strip().split("#")[0].strip() in ("|", "|-", "|+", ">", ">-", ">+"):
            block = indent
        if not m or m.group(1) == "defaults" or line.lstrip().startswith(("#", "- ")):
            continue
        value = m.group(2)
        opens_block = not value.strip() and i + 1 < len(lines) and lines[i + 1].startswith(line[: len(line) - len(line.lstrip())] + "  ")
        if "#" in value or (i and lines[i - 1].lstrip().startswith("#")) or opens_block:
            continue
        missing.append(f"{i + 1}: {line.strip()}")
    assert not missing, f"{path}: keys without a comment: {missing}"
