"""Defaults live in one place: the schemas. A YAML option file only sets
values that differ from its schema's defaults (an `experiment` may pin the
values it stands for), and the code that reads the config sees the schema's
defaults (no second default in code)."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import pytest
import yaml

from aloesim.agents import AgentsSettings, role_backend_settings, role_sampling
from aloesim.agents.gateway import BACKEND_SCHEMAS, BackendSettings, EmbeddedBackend
from aloesim.environment.personas import PersonasSettings
from aloesim.evaluation import MODEL_SCHEMAS
from aloesim.orchestration import check_config, compose_config
from aloesim.orchestration._generate import GenerationSettings, _concurrency
from aloesim.orchestration._schemas import COMMANDS, LogSettings
from aloesim.training import TrainingSettings

CONF = resources.files("aloesim.conf")
SINGLE = {"agents": AgentsSettings, "generation": GenerationSettings, "personas": PersonasSettings,
          "training": TrainingSettings, "log": LogSettings}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def _schema_defaults(top: str, backend: str) -> dict[str, Any]:
    """The defaults a key under ``top`` has before any YAML sets it."""
    if top == "backend":
        return _flat(BACKEND_SCHEMAS[backend](), "backend.")
    if top in SINGLE:
        return _flat(SINGLE[top](), f"{top}.")
    return _flat({k: f.default for k, f in ((f.name, f) for f in dataclasses.fields(COMMANDS["generate"]))
                  if f.default is not dataclasses.MISSING})


OPTION_FILES = sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*/*.yaml")
                      # prompts are texts; experiment/ and backend/serve/ hold one command's part of an option
                      if not {"prompts", "experiment", "serve"} & set(p.relative_to(CONF).parts))


@pytest.mark.parametrize("name", OPTION_FILES)
def test_an_option_file_sets_only_what_differs_from_its_schema(name: str) -> None:
    text = CONF.joinpath(name).read_text()
    data = yaml.safe_load(text) or {}
    defaults = data.pop("defaults", [])
    group = name.split("/")[0]
    backend = next((v for d in defaults if isinstance(d, dict) for k, v in d.items() if k == "override /backend"),
                   "embedded")
    prefix = "" if "@package _global_" in text else f"{group}."
    if group in ("backend", "model"):
        assert data == {}, f"{name}: the {group} schemas hold the defaults of each kind"
    same = []
    for key, value in _flat(data, prefix).items():
        known = _schema_defaults(key.split(".")[0], backend)
        if key in known and known[key] == value:
            same.append(key)
    assert not same, f"{name} repeats schema defaults: {same}"


def test_code_reads_the_schema_defaults() -> None:
    cfg = compose_config("generate", [])
    agents = AgentsSettings()
    for role in ("user", "inducer", "preferred", "rejected", "preference_judge"):
        assert _concurrency(cfg, role) == getattr(agents, role).concurrency == 64
        assert role_sampling(cfg, role) == getattr(agents, role).sampling
    assert role_backend_settings(cfg, "user") == EmbeddedBackend() and EmbeddedBackend().concurrency == 1
    assert BackendSettings().concurrency == EmbeddedBackend().concurrency  # the default kind's defaults
    assert check_config(cfg).generation == GenerationSettings()
    for kind, schema in MODEL_SCHEMAS.items():
        assert check_config(compose_config("evaluate", [f"model={kind}"])).model == schema()


def test_every_group_option_names_a_registered_schema_or_none() -> None:
    for command in COMMANDS:
        assert type(check_config(compose_config(command, ["tree=1"] if command == "show" else
                                                ["inputs=[a.db]"] if command == "merge" else []))) is COMMANDS[command]
