"""Where the Hydra config groups are, and how one option of a group is
composed with its typed schema: shared by the command line (which composes
whole commands) and by rooms that load a shipped preset (a role's backend)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ._settings import schema_node
from .errors import ConfigError

__all__ = ["CONFIG_MODULE", "compose_option", "group_options"]

CONFIG_MODULE = "aloesim.conf"


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files of ``conf/<group>/``."""
    folder = resources.files(CONFIG_MODULE).joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose_option(group: str, option: str, schemas: Mapping[str, type] | None = None) -> DictConfig:
    """One option of a config group (``conf/<group>/<option>.yaml``) composed with
    its schema, read-only (copy it to change it). ``schemas`` (``{kind: dataclass}``)
    are registered as ``<group>/<kind>_schema`` first, for the option files that
    name them."""
    from hydra import compose, initialize_config_module
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if option not in group_options(group):
        raise ConfigError(group, option, "one of " + " | ".join(group_options(group)))
    for kind, schema in (schemas or {}).items():
        ConfigStore.instance().store(group=group, name=f"{kind}_schema", node=schema_node(schema))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=f"{group}/{option}")
    except (HydraException, OmegaConfBaseException) as exc:
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(group, option, f"an option that composes ({first})") from None
    finally:
        GlobalHydra.instance().clear()
    node = cfg[group]  # the option lands in its group's package
    OmegaConf.set_readonly(node, True)
    return node
