"""Composing a command's config with Hydra, and turning Hydra's multi-line
complaints into one line that names the key, the value and what is allowed."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from importlib import resources

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..core.errors import ConfigError

CONFIG_MODULE = "aloesim.conf"


def group_options(group: str) -> list[str]:
    folder = resources.files(CONFIG_MODULE).joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def one_line(exc: BaseException, overrides: Sequence[str] = ()) -> ConfigError:
    """A one-line ConfigError for a Hydra / OmegaConf composition failure."""
    msg = str(exc)
    cause = str(exc.__cause__ or "")  # Hydra keeps "Key 'x' is not in struct" on the cause
    m = re.search(r"Could not override '([^']+)'", msg)
    if m and "not in struct" in msg + cause:
        key = m.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)
        return ConfigError(key, value, "a known key (this key does not exist; see `aloe <command> --help`)")
    m = re.search(r"Could not (?:find|load) '([^']+)/([^']+)'", msg) or re.search(
        r"In '[^']+': Could not find '([^']+)/([^']+)'", msg)
    if m:
        group, option = m.group(1), m.group(2)
        return ConfigError(group, option, "one of " + " | ".join(group_options(group)))
    m = re.search(r"Key '([^']+)' not in '([^']+)'", msg)
    if m:
        return ConfigError(m.group(1), None, f"a known key of {m.group(2)}")
    first = " ".join(line.strip() for line in msg.strip().splitlines()[:2] if line.strip())
    return ConfigError("overrides", " ".join(overrides), first or type(exc).__name__)


def compose_config(command: str, overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/<command>.yaml`` with the overrides (struct mode: unknown keys fail)."""
    # Keys a command declares plain (e.g. `aloe show evaluation=3`) would read as a
    # choice of the config group of the same name: set them after composing.
    plain = set(_plain_keys(command))
    late = [o for o in overrides if o.split("=", 1)[0] in plain]
    overrides = [o for o in overrides if o not in late]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=command, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise one_line(exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()
    try:
        for item in late:
            key, raw = item.split("=", 1)
            cfg[key] = yaml.safe_load(raw) if raw else None
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        if "HydraConfig was not set" not in str(exc):
            raise one_line(exc, [*overrides, *late]) from None
        # ${hydra:...} values (e.g. db=run_${hydra:job.num}.db in a launcher sweep)
        # resolve inside the Hydra job; everything else has been checked
    return cfg


def _plain_keys(command: str) -> tuple[str, ...]:
    try:
        module = importlib.import_module(f"aloesim.orchestration.commands.{command}")
    except ImportError:
        return ()
    return tuple(getattr(module, "PLAIN_KEYS", ()))


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
