"""Every error aloesim raises on purpose, in one place.

The CLI turns any ``AloeError`` into a single line on stderr and a non-zero
exit; anything else is a bug and keeps its traceback.

    AloeError
    ├── ConfigError            a config key or value is not allowed
    ├── InputError             a user file cannot be read (file, line, column)
    ├── StoreError             the database cannot be used (not SQLite, newer schema,
    │                          read-only, disk full, ...)
    ├── ServerError            a managed model server did not start or died
    └── LLMError               a model call failed for good (role, endpoint, reason)
        └── StructuredOutputError
                               the reply never matched the requested schema

Errors carry their data as attributes so callers (and tests) need not parse
messages; ``str(err)`` is the one line a user sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "AloeError",
    "ConfigError",
    "InputError",
    "LLMError",
    "ServerError",
    "StoreError",
    "StructuredOutputError",
    "lone_error",
    "the_lone_error",
]


class AloeError(Exception):
    """Base of every deliberate aloesim error."""

    exit_code = 1


class ConfigError(AloeError):
    """A config key or value is not allowed."""

    exit_code = 2

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {key}={value!r} is not allowed; expected {allowed}")


class InputError(AloeError):
    """A user-supplied file cannot be read. Nothing from it is stored."""

    exit_code = 2

    def __init__(self, path: str, reason: str, line: int | None = None, column: int | None = None) -> None:
        self.path, self.reason, self.line, self.column = str(path), reason, line, column
        where = self.path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"input error: {where}: {reason}")


class StoreError(AloeError):
    """The database cannot be opened or written."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"database error: {self.path}: {reason}")


class ServerError(AloeError):
    """A managed model server (llama.cpp, vLLM) failed to start or died."""

    def __init__(self, what: str, reason: str) -> None:
        self.what, self.reason = what, reason
        super().__init__(f"server error: {what}: {reason}")


class LLMError(AloeError):
    """A model call failed after its retries (or could not be retried)."""

    def __init__(self, role: str, endpoint: str, reason: str, attempts: int = 1) -> None:
        self.role, self.endpoint, self.reason, self.attempts = role, endpoint, reason, attempts
        super().__init__(f"LLM call failed: role={role} endpoint={endpoint} attempts={attempts}: {reason}")


class StructuredOutputError(LLMError):
    """The model's reply never validated against the requested schema."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def the_lone_error(group: BaseExceptionGroup) -> BaseException | None:
    """The one error behind a task group's failure, or None when there are several.

    That is the group's only leaf, or, when every leaf is an ``AloeError``
    (besides the broken or closed streams of tasks whose peer died of them:
    a full disk fails several writers at once), the first of them."""
    import anyio

    leaves = _leaves(group)
    if len(leaves) == 1:
        return leaves[0]
    errors = [e for e in leaves if not isinstance(e, (anyio.BrokenResourceError, anyio.ClosedResourceError))]
    if errors and all(isinstance(e, AloeError) for e in errors):
        return errors[0]
    return None


@contextmanager
def lone_error() -> Iterator[None]:
    """Re-raise a task group's failure as the error itself when there is one
    (see ``the_lone_error``), so tracebacks stay readable and the CLI can print
    an ``AloeError`` as one line; several unrelated errors stay a group."""
    try:
        yield
    except BaseExceptionGroup as group:
        lone = the_lone_error(group)
        if lone is None:
            raise
        raise lone from lone.__cause__
