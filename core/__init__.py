"""The bottom of the house: the one exceptions module and small helpers that
every room may import (and that import no room).

``aloesim.core.errors`` holds every deliberate error with the hierarchy drawn
in its docstring; ``lone_error`` re-raises a task group's single failure as
itself; ``run_interruptible`` and ``terminate_as_interrupt`` turn SIGINT and
SIGTERM into the same clean stop (``Interrupted``).
"""

from ._signals import Interrupted, run_interruptible, terminate_as_interrupt
from ._tasks import lone_error, the_lone_error
from .errors import (
    AloeError,
    ConfigError,
    InputError,
    LLMError,
    RunBusyError,
    ServerError,
    StoreError,
    StructuredOutputError,
)

__all__ = [
    "AloeError",
    "ConfigError",
    "InputError",
    "Interrupted",
    "LLMError",
    "RunBusyError",
    "ServerError",
    "StoreError",
    "StructuredOutputError",
    "lone_error",
    "run_interruptible",
    "terminate_as_interrupt",
    "the_lone_error",
]
