"""Every key of every command's composed config, given a value its schema does
not allow (a wrong type, null where null is not allowed, a string outside its
choices, a number past its bounds or cap), stops ``aloe`` with one line that
names the key, exit code 2, before the command runs and with nothing written.

The keys and the wrong values are derived from the composed config and the
schema annotations, so a key added later is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import subprocess
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import structlog
from omegaconf import DictConfig, OmegaConf

from aloesim.orchestration import compose_config
from aloesim.orchestration.cli import main

COMMANDS = sorted(p.name[:-5] for p in resources.files("aloesim.conf").iterdir() if p.name.endswith(".yaml"))
ALOE = str(Path(sys.executable).with_name("aloe"))


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else tuple(args)), len(args) < len(typing.get_args(hint))
    return hint, False


def _field(owner: type, name: str) -> tuple[Any, bool, Any]:
    """(annotation without Optional, nullable, metadata) of a schema field."""
    f = next(f for f in dataclasses.fields(owner) if f.name == name)
    inner, optional = _strip_optional(typing.get_type_hints(owner)[name])
    return inner, optional or inner is Any, f.metadata


def wrong_type(owner: type, name: str) -> str:
    """An override value of a type the schema field ``owner.name`` does not have."""
    inner, _, _ = _field(owner, name)
    if dataclasses.is_dataclass(inner):
        return "abc"                     # a scalar where a mapping of keys belongs
    if inner is Any:
        return "{a:1}"                   # a mapping where ids / files / module names belong
    if inner is bool:
        return "maybe"
    if typing.get_origin(inner) in (list, tuple):
        return "abc"
    if isinstance(inner, tuple):         # int | str: a micro-batch (auto or a number)
        return "[1]"
    if inner in (int, float):
        return "abc"
    assert inner is str, (owner, name, inner)
    return "[1,2]"


def wrong_values(owner: type, name: str) -> list[str]:
    """Override values of the right type the schema field must refuse: null where
    null is not allowed, a number past a bound or cap, a string outside its choices,
    an empty string where text is needed, a list holding a wrong element."""
    inner, nullable, meta = _field(owner, name)
    out = [] if nullable else ["null"]
    if typing.get_origin(inner) in (list, tuple):
        return [*out, "[abc]" if typing.get_args(inner)[0] in (int, float) else "[[1]]"]
    if isinstance(inner, tuple):
        return [*out, "2.5", "nosuch", "0"]
    if inner in (int, float):
        out += ["2.5"] if inner is int else []
        for key, step in (("le", 1), ("lt", 0), ("ge", -1), ("gt", 0)):
            bound = meta.get(key)
            if bound is not None:
                out.append(str(bound + step if inner is int else bound + step * max(1, abs(bound))))
    if inner is str and meta.get("choices"):
        out.append("nosuch")
    if inner is str and meta.get("nonempty"):
        out.append("''")
    return out


def leaves(node: DictConfig, prefix: str = "") -> list[tuple[str, type, str]]:
    """(dotted key, schema class, field name) of every key of a composed config, nodes included."""
    out = []
    owner = OmegaConf.get_type(node)
    fields = {f.name for f in dataclasses.fields(owner)} if dataclasses.is_dataclass(owner) else set()
    for key in node:
        full = f"{prefix}{key}"
        child = node._get_node(key)
        if key in fields:
            out.append((full, owner, str(key)))
        elif dataclasses.is_dataclass(OmegaConf.get_type(child)):  # a node another schema adds (personas: import)
            out.append((full, OmegaConf.get_type(child), ""))
        if isinstance(child, DictConfig) and not (child._is_none() or child._is_missing()):
            out += leaves(child, full + ".")
    return out


def _refused(command: str, key: str, code: int, err: str) -> str | None:
    """None when ``err`` is the one line a refused value must give, else what is wrong."""
    lines = err.strip().splitlines()
    if code == 2 and len(lines) == 1 and lines[0].startswith(f"aloe {command}: config error: {key}="):
        return None
    return f"exit {code}: {err.strip()[:300]}"


@pytest.fixture
def no_command_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Every command's ``run`` replaced by a failure: a refused value must stop ``aloe`` before it."""
    for command in COMMANDS:
        module = importlib.import_module(f"aloesim.orchestration.commands.{command}")

        def must_not_run(cfg: Any, command: str = command) -> int:
            raise AssertionError(f"aloe {command} ran with a value its schema refuses")

        monkeypatch.setattr(module, "run", must_not_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    yield tmp_path
    assert not list(tmp_path.iterdir())  # no database, no folder: nothing was written


@pytest.mark.parametrize("command", COMMANDS)
def test_every_key_refuses_a_value_of_the_wrong_type(command: str, no_command_runs: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    keys = leaves(compose_config(command, []))
    problems = []
    for key, owner, name in keys:
        values = [wrong_type(owner, name)] if name else ["abc"]
        if name and dataclasses.is_dataclass(_field(owner, name)[0]):
            values.append("null")  # a whole section (for a config group: its option) cannot be null
        for value in values:
            argv = [command, f"{key}={value}"] + ([] if key == "db" else ["db=never.db"])
            try:
                code = main(argv)
            except AssertionError as exc:
                problems.append(f"{key}={value}: {exc}")
                continue
            if (problem := _refused(command, key, code, capsys.readouterr().err)) is not None:
                problems.append(f"{key}={value}: {problem}")
    assert len(keys) >= 7 and not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_field_refuses_nulls_bounds_caps_and_choices(no_command_runs: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Each schema field once (under the first command that has it): the values of
    the right type it must still refuse. Hydra's own override machinery applies
    each value to a copy of the composed config, as ``compose`` does after the
    defaults list (composing from scratch for each of ~500 values would take minutes)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from aloesim.core.errors import ConfigError
    from aloesim.orchestration import check_config
    from aloesim.orchestration._config import one_line

    parser = OverridesParser.create()
    seen: set[tuple[type, str]] = set()
    problems, tried = [], 0
    for command in COMMANDS:
        base = compose_config(command, [])
        for key, owner, name in leaves(base):
            if not name or (owner, name) in seen or dataclasses.is_dataclass(_field(owner, name)[0]):
                continue
            seen.add((owner, name))
            for value in wrong_values(owner, name):
                tried += 1
                cfg = base.copy()
                try:
                    try:
                        ConfigLoaderImpl._apply_overrides_to_config(parser.parse_overrides([f"{key}={value}"]), cfg)
                    except HydraException as exc:
                        raise one_line(exc, [f"{key}={value}"]) from None
                    check_config(cfg)
                except ConfigError as exc:
                    if exc.key != key or "\n" in str(exc):
                        problems.append(f"{command} {key}={value}: {exc}")
                    continue
                problems.append(f"{command} {key}={value}: accepted")
    assert tried > 300 and not problems, "\n".join(problems)
    # and the same through the command line, for one value of each kind
    for command, override in [("generate", "generation.turns=101"), ("generate", "generation.mode=bushy"),
                              ("view", "view.port=null"), ("train", "training.output_dir=''"),
                              ("personas", "personas.stats.thresholds=[0.5,abc]")]:
        key = override.split("=")[0]
        assert _refused(command, key, main([command, "db=never.db", override]), capsys.readouterr().err) is None


def test_caps_name_the_cap(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for command, override, allowed in [
        ("generate", "generation.turns=1000", "an integer in [1, 100]"),
        ("generate", "generation.trees=100000000", "an integer in [1, 10_000_000]"),
        ("evaluate", "benchmark.turns=101", "an integer in [1, 100]"),
        ("generate", "agents.user.max_tokens=1000000", "an integer in [1, 131_072]"),
        ("generate", "backend.concurrency=100000", "an integer in [1, 4096]"),
        ("personas", "personas.target_profiles=100000000", "an integer in [0, 1_000_000]"),
    ]:
        assert main([command, f"db={tmp_path / 'x.db'}", override]) == 2
        key, value = override.split("=")
        assert capsys.readouterr().err.strip() == (
            f"aloe {command}: config error: {key}={int(value)} is not allowed; expected {allowed}")
    assert not (tmp_path / "x.db").exists()


def _aloe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALOE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


EXPECTED = ("aloe generate: config error: agents.preferred.temperature='abc' is not allowed; "
            "expected a number in [0, 2]")


@pytest.mark.parametrize("sweep", [[], ["-m"], ["-m", "hydra/launcher=basic"]], ids=["single", "-m", "launcher"])
def test_a_wrong_type_is_one_line_from_the_real_command(tmp_path: Path, sweep: list[str]) -> None:
    value = "0.3,abc" if sweep else "abc"  # in a sweep, the second job's value is the bad one
    out = _aloe(tmp_path, "generate", *sweep, "db=x.db", f"agents.preferred.temperature={value}")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == EXPECTED
    assert not list(tmp_path.iterdir())  # no database, no sweep folder, no job ran


def test_joblib_launcher_sweep_refuses_before_launching(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    out = _aloe(tmp_path, "generate", "-m", "hydra/launcher=joblib", "db=x.db", "generation.turns=2,ten")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("aloe generate: config error: generation.turns='ten' is not allowed; "
                                  "expected an integer in [1, 100]")
    assert not list(tmp_path.iterdir())
