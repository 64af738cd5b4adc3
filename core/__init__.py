"""The bottom of the house: the one exceptions module and small helpers that
every room may import (and that import no room).

``aloesim.core.errors`` holds every deliberate error with the hierarchy drawn
in its docstring; ``lone_error`` re-raises a task group's single failure as
itself; ``Settings`` / ``setting`` / ``to_settings`` are how every config
group's typed schema is written, checked and built (``_settings.py``).
"""

from ._compose import CONFIG_MODULE, compose_option, group_options
from ._settings import Settings, allowed, config_error, help_of, schema_node, setting, to_settings
from ._tasks import lone_error, the_lone_error
from .errors import (
    AloeError,
    ConfigError,
    InputError,
    LLMError,
    ServerError,
    StoreError,
    StructuredOutputError,
)

__all__ = [
    "CONFIG_MODULE",
    "AloeError",
    "ConfigError",
    "InputError",
    "LLMError",
    "ServerError",
    "Settings",
    "StoreError",
    "StructuredOutputError",
    "allowed",
    "compose_option",
    "config_error",
    "group_options",
    "help_of",
    "lone_error",
    "schema_node",
    "setting",
    "the_lone_error",
    "to_settings",
]
