"""Config composition in-process: every command and group option composes,
mistakes become one-line ``ConfigError``s naming key, value and what is
allowed, ``-m`` sweeps expand in Hydra's order, and the CLI turns a lone
``AloeError`` inside a task group into its one line."""

from __future__ import annotations

import logging
from importlib import resources

import pytest
import structlog

from aloesim.core import group_options
from aloesim.core.errors import AloeError, ConfigError, StoreError
from aloesim.orchestration import compose_config
from aloesim.orchestration._config import sweep_combinations
from aloesim.orchestration.cli import _lone_aloe_error, available_commands, main


@pytest.fixture(autouse=True)
def _restore_logging():
    """``main`` configures logging onto capsys's stream; undo that for later tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


COMMANDS = sorted(p.name[:-5] for p in resources.files("aloesim.conf").iterdir()
                  if p.name.endswith(".yaml") and p.name != "base.yaml")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_primary_config_composes_with_base(command: str) -> None:
    cfg = compose_config(command, [])
    for key in ("db", "seed", "cache", "log"):
        assert key in cfg, f"conf/{command}.yaml does not include base"
    assert command in available_commands(), f"conf/{command}.yaml has no command module"


@pytest.mark.parametrize("option", group_options("backend"))
def test_every_backend_option_composes(option: str) -> None:
    cfg = compose_config("generate", [f"backend={option}"])
    assert cfg.backend.kind == option


def test_overrides_apply() -> None:
    cfg = compose_config("generate", ["db=run.db", "generation.turns=3", "agents.preferred.temperature=0.3"])
    assert (cfg.db, cfg.generation.turns, cfg.agents.preferred.temperature) == ("run.db", 3, 0.3)


@pytest.mark.parametrize("override,key,value", [
    ("nosuchkey=1", "nosuchkey", "1"),
    ("generation.nosuch=3", "generation.nosuch", "3"),
])
def test_unknown_key(override: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config("generate", [override])
    assert (info.value.key, info.value.value) == (key, value)
    assert "known key" in info.value.allowed and "\n" not in str(info.value)


def test_bad_group_option_lists_the_options() -> None:
    with pytest.raises(ConfigError) as info:
        compose_config("generate", ["backend=nope"])
    assert (info.value.key, info.value.value) == ("backend", "nope")
    assert info.value.allowed == "one of " + " | ".join(group_options("backend"))


@pytest.mark.parametrize("override", ["generation.turns=1,2", "db=${nope}", "generation=[unbalanced"])
def test_other_composition_failures_are_one_line(override: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config("generate", [override])
    assert "\n" not in str(info.value) and str(info.value)


def test_sweep_combinations_in_hydra_order() -> None:
    jobs = sweep_combinations(["db=x.db", "a=1,2", "b=x,y"])
    assert jobs == [
        ["db=x.db", "a=1", "b=x"], ["db=x.db", "a=1", "b=y"],
        ["db=x.db", "a=2", "b=x"], ["db=x.db", "a=2", "b=y"],
    ]
    assert sweep_combinations(["seed=range(0,3)"]) == [["seed=0"], ["seed=1"], ["seed=2"]]
    assert sweep_combinations(["db=x.db"]) == [["db=x.db"]]


def test_bad_sweep_syntax_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        sweep_combinations(["a=range(1,"])


def test_a_lone_aloe_error_in_task_groups_is_found() -> None:
    err = StoreError("x.db", "is read-only")
    assert _lone_aloe_error(ExceptionGroup("g", [ExceptionGroup("h", [err])])) is err
    assert _lone_aloe_error(err) is err
    assert _lone_aloe_error(ExceptionGroup("g", [err, ValueError()])) is None
    assert _lone_aloe_error(ExceptionGroup("g", [ValueError()])) is None


def test_main_returns_the_exit_code_and_prints_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    code = main(["generate", f"db={tmp_path / 'x.db'}", "generation.mode=sideways"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "generation.mode" in err
    assert not (tmp_path / "x.db").exists()
    assert issubclass(ConfigError, AloeError)
