"""The bottom of the house: the one exceptions module and small helpers that
every room may import (and that import no room).

``aloesim.core.errors`` holds every deliberate error with the hierarchy drawn
in its docstring; ``lone_error`` re-raises a task group's single failure as
itself; ``safe_text``/``safe_count`` make a value safe to store where it is
produced; ``decode_utf8``/``check_json_line``/``check_text_line`` refuse a
user file's bad bytes and characters with file:line:column.
"""

from ._safe import MAX_COUNT, plain_json, safe_count, safe_seconds, safe_text
from ._tasks import lone_error, the_lone_error
from ._text import check_json_line, check_text_line, decode_utf8, refused_char
from .errors import (
    AloeError,
    ConfigError,
    InputError,
    LLMError,
    OutputError,
    ServerError,
    StoreError,
    StructuredOutputError,
)

__all__ = [
    "MAX_COUNT",
    "AloeError",
    "ConfigError",
    "InputError",
    "LLMError",
    "OutputError",
    "ServerError",
    "StoreError",
    "StructuredOutputError",
    "check_json_line",
    "check_text_line",
    "decode_utf8",
    "lone_error",
    "plain_json",
    "refused_char",
    "safe_count",
    "safe_seconds",
    "safe_text",
    "the_lone_error",
]
