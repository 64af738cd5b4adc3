"""Composing a command's config with Hydra against its typed schema, and
turning Hydra's multi-line complaints into one line that names the key, the
value and what is allowed.

Every schema is registered in Hydra's ConfigStore here, once, on import:
``<command>_schema`` (``_schemas.COMMANDS``), ``import_schema`` (joined as
``import_schema@import`` by ``conf/personas.yaml``), and per kind
``backend/<kind>_schema`` and ``model/<kind>_schema``, which the option files
of those two groups name. Composition type-checks every value and override
(an int key given ``abc`` fails here); ``check_config`` then builds the
settings objects, so every range, choice and combination is checked before
a command runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from importlib import resources
from typing import Any

import yaml
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    ConfigTypeError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from ..agents.gateway import BACKEND_SCHEMAS
from ..core import (
    CONFIG_MODULE,
    allowed,
    config_error,
    group_options,
    help_of,
    schema_node,
    to_settings,
)
from ..core.errors import ConfigError
from ..evaluation import MODEL_SCHEMAS
from ._hydra_plugins import hydra_choice_error
from ._schemas import COMMANDS, ImportSettings


def _register() -> None:
    store = ConfigStore.instance()
    for command, schema in COMMANDS.items():
        # personas: `import` (a Python keyword, so no dataclass field) joins the root as import_schema@import
        store.store(name=f"{command}_schema", node=schema_node(schema, open_root=command == "personas"))
    store.store(name="import_schema", node=schema_node(ImportSettings))
    for group, schemas in (("backend", BACKEND_SCHEMAS), ("model", MODEL_SCHEMAS)):
        for kind, schema in schemas.items():
            store.store(group=group, name=f"{kind}_schema", node=schema_node(schema))


_register()


def one_line(exc: BaseException, overrides: Sequence[str] = ()) -> ConfigError:
    """A one-line ConfigError for a Hydra / OmegaConf composition failure."""
    msg = str(exc)
    cause = str(exc.__cause__ or "")  # Hydra keeps "Key 'x' is not in struct" on the cause
    typed = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(typed, (ValidationError, MissingMandatoryValue, ConfigTypeError)):
        err = config_error(typed)  # a value that does not fit the schema's type
        given = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == err.key), None)
        return err if err.value is not None or given in (None, "null") else ConfigError(err.key, given, err.allowed)
    m = re.search(r"Could not override '([^']+)'", msg)
    if m and ("not in struct" in msg + cause or isinstance(typed, (ConfigAttributeError, ConfigKeyError))):
        key = m.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)
        return ConfigError(key, value, "a known key (this key does not exist; see `aloe <command> --help`)")
    m = re.search(r"Could not append to config. An item is already at '([^']+)'", msg)
    if m:
        key = m.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)
        return ConfigError(f"+{key}", value, f"{key}=VALUE without the + (the key exists)")
    m = re.search(r"Could not (?:find|load) '([^']+)/([^']+)'", msg) or re.search(
        r"In '[^']+': Could not find '([^']+)/([^']+)'", msg)
    if m:
        group, option = m.group(1), m.group(2)
        if group.startswith("hydra/"):  # Hydra's own plugin groups: say which package to install
            return hydra_choice_error(group, option) or ConfigError(group, option, "an installed option")
        return ConfigError(group, option, "one of " + " | ".join(group_options(group)))
    m = re.search(r"Key '([^']+)' not in '([^']+)'", msg)
    if m:
        return ConfigError(m.group(1), None, f"a known key of {m.group(2)}")
    first = " ".join(line.strip() for line in msg.strip().splitlines()[:2] if line.strip())
    return ConfigError("overrides", " ".join(overrides), first or type(exc).__name__)


@functools.cache
def _defaults(command: str) -> dict[str, str | None]:
    """``{group: default option}`` of ``conf/<command>.yaml``'s defaults list."""
    ref = resources.files(CONFIG_MODULE).joinpath(f"{command}.yaml")
    entries = (yaml.safe_load(ref.read_text()) or {}).get("defaults", []) if ref.is_file() else []
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}


def _check_group_overrides(command: str, overrides: Sequence[str]) -> None:
    """Overrides Hydra would misread as a choice of a config group: a key of this
    command that shares its name with a group it does not use (``aloe demo
    personas=...``), and ``null`` for a group the command cannot do without."""
    groups = _defaults(command)
    schema = COMMANDS.get(command)
    for item in overrides:
        key, _, value = item.partition("=")
        if "." in key or "/" in key or key.startswith(("+", "~")) or not group_options(key):
            continue
        if key not in groups and schema is not None and key in {f.name for f in fields(schema)}:
            raise ConfigError(key, value, allowed(schema, key) + f", set key by key ({key}.KEY=VALUE)")
        if key in groups and groups[key] is not None and value == "null":
            raise ConfigError(key, None, "one of " + " | ".join(group_options(key)))


def compose_config(command: str, overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/<command>.yaml`` with the overrides against the command's
    schema (struct mode: unknown keys fail; every value is type-checked)."""
    _check_group_overrides(command, overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=command, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise one_line(exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        if "HydraConfig was not set" not in str(exc):
            raise one_line(exc, overrides) from None
        # ${hydra:...} values (e.g. db=run_${hydra:job.num}.db in a launcher sweep)
        # resolve inside the Hydra job; everything else has been checked
    return cfg


def check_config(cfg: DictConfig) -> Any:
    """Build the command's settings objects from a composed config: every range,
    choice and combination of every key is checked (``ConfigError`` names the
    first bad key). Returns the root settings object."""
    return to_settings(cfg)


@functools.cache
def config_yaml(cfg: DictConfig) -> str:
    """The composed config as YAML, each key followed by its schema's help."""
    lines: list[str] = []

    def walk(node: DictConfig, pad: str) -> None:
        schema = OmegaConf.get_type(node)
        for key in node:
            child = node._get_node(key)
            text = help_of(schema, str(key)) if is_dataclass(schema) else None
            if text and not isinstance(child, DictConfig):
                rule = allowed(schema, str(key))
                text += "" if rule in ("a string", text) or rule in text else f" [{rule}]"
            comment = f"  # {text}" if text else ""
            if isinstance(child, DictConfig) and not (child._is_none() or child._is_missing()):
                lines.append(f"{pad}{key}:{comment}")
                walk(child, pad + "  ")
                continue
            value = OmegaConf.to_container(child, resolve=True) if isinstance(child, ListConfig) else node.get(key)
            first, *rest = OmegaConf.to_yaml({key: value}).rstrip("\n").splitlines()
            lines.append(f"{pad}{first}{comment}")
            lines.extend(pad + line for line in rest)

    walk(cfg, "")
    return "\n".join(lines) + "\n"


def sweep_combinations(overrides: Sequence[str]) -> list[list[str]]:
    """Expand Hydra sweep syntax (``a=1,2 b=x,y``) into one override list per job,
    in Hydra's BasicSweeper order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise one_line(exc, overrides) from None
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
