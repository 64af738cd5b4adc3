"""Every error aloesim raises on purpose, in one place.

The CLI turns any ``AloeError`` into a single line on stderr and a non-zero
exit; anything else is a bug and keeps its traceback.

    AloeError
    ├── ConfigError            a config key or value is not allowed
    │   └── MissingKeyError    the environment variable naming an API key is not set
    ├── InputError             a user file cannot be read (file, line, column)
    ├── OutputError            an output folder or file cannot be written (full disk, ...)
    ├── StoreError             the database cannot be used (not SQLite, newer schema,
    │                          read-only, disk full, ...)
    ├── RunBusyError           another process holds the run's lease (or took it over)
    ├── BudgetReached          the run's spend reached budget.usd: stopped cleanly, resumable
    ├── ServerError            a managed model server did not start or died
    └── LLMError               a model call failed for good (role, endpoint, reason)
        └── StructuredOutputError
                               the reply never matched the requested schema

Errors carry their data as attributes so callers (and tests) need not parse
messages; ``str(err)`` is the one line a user sees. ``with_hint`` appends the
next step (``re-run with retry_failed=true``) to that line.
"""

from __future__ import annotations

__all__ = [
    "AloeError",
    "BudgetReached",
    "ConfigError",
    "InputError",
    "LLMError",
    "MissingKeyError",
    "OutputError",
    "RunBusyError",
    "ServerError",
    "StoreError",
    "StructuredOutputError",
]


class AloeError(Exception):
    """Base of every deliberate aloesim error."""

    exit_code = 1
    hint: str | None = None  # the next step, printed at the end of the line

    def with_hint(self, hint: str) -> AloeError:
        """This error with ``hint`` (what to do next) at the end of its line; returns self."""
        self.hint = hint
        return self

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}; {self.hint}" if self.hint else text


class ConfigError(AloeError):
    """A config key or value is not allowed."""

    exit_code = 2

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {key}={value!r} is not allowed; expected {allowed}")


class MissingKeyError(ConfigError):
    """The environment variable that should hold an API key (named by ``key``,
    e.g. ``backend.api_key_env``) is not set. The key itself is never shown."""

    def __init__(self, key: str, variable: str) -> None:
        self.key, self.value = key, variable
        self.allowed = "the name of a set environment variable holding the API key"
        AloeError.__init__(self, f"config error: the environment variable {variable} is not set ({key}={variable} "
                           f"names the variable holding the API key); set it with `export {variable}=...`, or "
                           f"name the variable that holds your key with {key}=NAME")


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


class OutputError(AloeError):
    """An output (export files, a report) cannot be written. What was there stays."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"output error: {self.path}: {reason}")


class StoreError(AloeError):
    """The database cannot be opened or written."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"database error: {self.path}: {reason}")


class RunBusyError(AloeError):
    """Another process is running this run (it holds the run's lease), or took
    it over from this one. Nothing was written. Exit code 75 (EX_TEMPFAIL:
    try again once the other process is done)."""

    exit_code = 75

    def __init__(self, run_id: int, kind: str, pid: int, host: str, reason: str) -> None:
        self.run_id, self.kind, self.pid, self.host, self.reason = run_id, kind, pid, host, reason
        super().__init__(f"run {run_id} ({kind}) {reason}")


class BudgetReached(AloeError):
    """A run stopped because its spend reached ``budget.usd``: the calls in flight
    finished and were recorded, the run is marked interrupted and continues
    when the same command runs again with a higher limit. Exit code 4."""

    exit_code = 4

    def __init__(self, run_id: int, kind: str, spent: float, limit: float) -> None:
        self.run_id, self.kind, self.spent, self.limit = run_id, kind, spent, limit
        super().__init__(f"budget reached: run {run_id} ({kind}) has spent ${spent:.4f} of budget.usd={limit:g}; "
                         "it stopped cleanly (calls in flight finished and were recorded; the run is marked "
                         "interrupted): raise budget.usd and run the same command again to continue")


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
