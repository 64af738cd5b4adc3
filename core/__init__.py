"""The bottom of the house: the one exceptions module and small helpers that
every room may import (and that import no room).

``aloesim.core.errors`` holds every deliberate error with the hierarchy drawn
in its docstring; ``lone_error`` re-raises a task group's single failure as
itself; ``Settings`` / ``setting`` / ``to_settings`` are how every config
group's typed schema is written, checked and built (``_settings.py``);
``run_interruptible`` and ``terminate_as_interrupt`` turn SIGINT and SIGTERM
into the same clean stop (``Interrupted``); ``safe_text``/``safe_count`` make
a value safe to store where it is produced; ``decode_utf8``/``check_json_line``/
``check_text_line`` refuse a user file's bad bytes and characters with
file:line:column; ``terminal_safe`` (with
``terminal_safe_data`` and ``json_safe``) is the one way text from models,
files and the database is made safe to print on a terminal; ``replace_atomically``
writes an output file so that no reader sees it half-written.
"""

from ._compose import CONFIG_MODULE, compose_option, group_options
from ._files import replace_atomically
from ._safe import MAX_COUNT, plain_json, safe_count, safe_seconds, safe_text
from ._settings import Settings, allowed, config_error, help_of, schema_node, setting, to_settings
from ._signals import Interrupted, run_interruptible, terminate_as_interrupt
from ._tasks import lone_error, the_lone_error
from ._terminal import json_safe, terminal_safe, terminal_safe_data
from ._text import check_json_line, check_text_line, decode_utf8, refused_char
from .errors import (
    AloeError,
    ConfigError,
    InputError,
    LLMError,
    OutputError,
    RunBusyError,
    ServerError,
    StoreError,
    StructuredOutputError,
)

__all__ = [
    "CONFIG_MODULE",
    "MAX_COUNT",
    "AloeError",
    "ConfigError",
    "InputError",
    "Interrupted",
    "LLMError",
    "OutputError",
    "RunBusyError",
    "ServerError",
    "Settings",
    "StoreError",
    "StructuredOutputError",
    "allowed",
    "check_json_line",
    "check_text_line",
    "compose_option",
    "config_error",
    "decode_utf8",
    "group_options",
    "help_of",
    "json_safe",
    "lone_error",
    "plain_json",
    "refused_char",
    "replace_atomically",
    "run_interruptible",
    "safe_count",
    "safe_seconds",
    "safe_text",
    "schema_node",
    "setting",
    "terminal_safe",
    "terminal_safe_data",
    "terminate_as_interrupt",
    "the_lone_error",
    "to_settings",
]
