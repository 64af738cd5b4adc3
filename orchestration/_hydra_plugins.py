"""Hydra's own plugin groups (``hydra/launcher``, ``hydra/sweeper``): which
options are installed, and a one-line error naming the package to install
for a known plugin that is not (instead of Hydra's "Could not find
'hydra/launcher/joblib'" with its search path)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core import CONFIG_MODULE
from ..core.errors import ConfigError

__all__ = ["PLUGIN_PACKAGES", "check_hydra_choices", "hydra_choice_error", "installed_options"]

#: option of a Hydra plugin group -> the package that provides it (and the aloesim extra that has it)
PLUGIN_PACKAGES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("hydra/launcher", "joblib"): ("hydra-joblib-launcher", "dev"),
    ("hydra/launcher", "submitit_local"): ("hydra-submitit-launcher", None),
    ("hydra/launcher", "submitit_slurm"): ("hydra-submitit-launcher", None),
    ("hydra/launcher", "ray"): ("hydra-ray-launcher", None),
    ("hydra/launcher", "ray_aws"): ("hydra-ray-launcher", None),
    ("hydra/launcher", "rq"): ("hydra-rq-launcher", None),
    ("hydra/sweeper", "optuna"): ("hydra-optuna-sweeper", None),
    ("hydra/sweeper", "ax"): ("hydra-ax-sweeper", None),
    ("hydra/sweeper", "nevergrad"): ("hydra-nevergrad-sweeper", None),
}


def installed_options(group: str) -> list[str]:
    """The options of a ``hydra/...`` group that Hydra can find (plugins included)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType
    from hydra.core.plugins import Plugins

    Plugins.instance()  # imports the installed hydra_plugins, which register their configs
    repo = ConfigRepository(create_config_search_path(f"pkg://{CONFIG_MODULE}"))
    return sorted(repo.get_group_options(group, ObjectType.CONFIG))


def hydra_choice_error(group: str, option: str) -> ConfigError | None:
    """None if ``group=option`` is installed, else the one-line error saying what to install."""
    options = installed_options(group)
    if option in options:
        return None
    have = " | ".join(options) or "none installed"
    package = PLUGIN_PACKAGES.get((group, option))
    if package is None:
        return ConfigError(group, option, f"one of {have}")
    name, extra = package
    how = f"pip install {name}" + (f" (or the {extra} extra: pip install -e '.[{extra}]')" if extra else "")
    return ConfigError(group, option, f"one of {have}; {option} needs the {name} package, not installed here: {how}")


def check_hydra_choices(overrides: Sequence[str]) -> None:
    """Raise the one-line error for the first ``hydra/GROUP=OPTION`` override Hydra cannot find."""
    for item in overrides:
        key, sep, value = item.lstrip("+").partition("=")
        if sep and key.startswith("hydra/") and value not in ("", "null") and (
                err := hydra_choice_error(key, value)) is not None:
            raise err
