"""Calls: every statement on ``llm_calls`` and ``llm_cache``.

The totals of a run's calls (calls, tokens, retries, failed and cached
calls) have their one home here: ``Calls.totals`` for one run and
``Calls.totals_by_run`` for all, from the same select list.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ._rows import loads, row_as

__all__ = ["CallRow", "CallTotals", "Calls", "NewCall", "RoleTotals"]

_CALL_COLS = ("id, role, model, endpoint, tree_id, turn, branch, case_id, request, response, prompt_tokens,"
              " completion_tokens, latency_s, attempts, cached, error, created_at")
# one row of totals over a set of calls
_TOTALS = ("COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
           " COALESCE(SUM(completion_tokens), 0) AS completion_tokens,"
           " COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS retries,"
           " COALESCE(SUM(error IS NOT NULL), 0) AS failures, COALESCE(SUM(cached), 0) AS cached")


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call record as the gateway writes it (``request`` is the JSON-able
    messages and sampling parameters; never headers or keys)."""

    run_id: int | None
    role: str
    endpoint: str
    model: str
    tree_id: int | None
    turn: int | None
    branch: str | None
    case_id: int | None
    request: Any
    response: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    cached: bool
    error: str | None
    cache_key: str | None


@dataclass(frozen=True, slots=True)
class CallRow:
    """One stored call (``request`` parsed; the text when not JSON)."""

    id: int
    role: str
    model: str
    endpoint: str
    tree_id: int | None
    turn: int | None
    branch: str | None
    case_id: int | None
    request: Any
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    attempts: int
    cached: bool
    error: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class CallTotals:
    """A run's calls in totals. ``retries`` counts the attempts past the first;
    ``failures`` the calls that failed for good."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0
    cached: int = 0


@dataclass(frozen=True, slots=True)
class RoleTotals:
    """One role's calls in a run."""

    role: str
    calls: int
    errors: int
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cached: int
    mean_latency_s: float | None
    max_latency_s: float | None


def _call(row: sqlite3.Row) -> CallRow:
    return row_as(CallRow, row, request=loads(row["request"]), cached=bool(row["cached"]))


def _totals(row: sqlite3.Row) -> CallTotals:
    return CallTotals(*(int(row[k]) for k in ("calls", "prompt_tokens", "completion_tokens", "retries",
                                              "failures", "cached")))


class Calls:
    """Every statement on ``llm_calls`` (the record of every model call) and
    ``llm_cache`` (replies by request identity)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- the gateway's memory -----------------------------------------------
    def add(self, call: NewCall, cache: tuple[str, Any] | None = None) -> None:
        """Record a call, and cache its reply under ``cache = (key, value)``."""
        self.conn.execute(
            "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, case_id, request,"
            " response, prompt_tokens, completion_tokens, latency_s, attempts, cached, error, cache_key,"
            " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call.run_id, call.role, call.endpoint, call.model, call.tree_id, call.turn, call.branch, call.case_id,
             json.dumps(call.request, ensure_ascii=False), call.response, call.prompt_tokens,
             call.completion_tokens, call.latency_s, call.attempts, int(call.cached), call.error, call.cache_key,
             time.time()))
        if cache is not None:
            self.conn.execute("INSERT OR IGNORE INTO llm_cache (key, response, created_at) VALUES (?,?,?)",
                              (cache[0], json.dumps(cache[1], ensure_ascii=False), time.time()))

    def cached(self, key: str) -> Any | None:
        """The cached reply of a request identity, or None."""
        row = self.conn.execute("SELECT response FROM llm_cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- totals --------------------------------------------------------------
    def totals(self, run_id: int) -> CallTotals:
        return _totals(self.conn.execute(f"SELECT {_TOTALS} FROM llm_calls WHERE run_id = ?", (run_id,)).fetchone())

    def totals_by_run(self) -> dict[int, CallTotals]:
        return {r["run_id"]: _totals(r) for r in self.conn.execute(
            f"SELECT run_id, {_TOTALS} FROM llm_calls GROUP BY run_id")}

    def by_role(self, run_id: int) -> list[RoleTotals]:
        """Per-role totals of a run, by role name (one pass over the run's index range)."""
        rows = self.conn.execute(
            "SELECT role, COUNT(*) AS calls, COALESCE(SUM(error IS NOT NULL), 0) AS errors,"
            " COALESCE(SUM(attempts), 0) AS attempts, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(cached), 0) AS cached,"
            " AVG(latency_s) AS mean_latency_s, MAX(latency_s) AS max_latency_s"
            " FROM llm_calls WHERE run_id = ? GROUP BY role ORDER BY role", (run_id,))
        return [row_as(RoleTotals, r) for r in rows]

    def errors(self, run_id: int, limit: int) -> list[tuple[int, str, str, int | None]]:
        """The first ``limit`` failed calls of a run: (call id, role, error, tree id)."""
        return [(r[0], r[1], r[2], r[3]) for r in self.conn.execute(
            "SELECT id, role, error, tree_id FROM llm_calls WHERE run_id = ? AND error IS NOT NULL"
            " ORDER BY id LIMIT ?", (run_id, limit))]

    def newest_id(self, run_id: int) -> int | None:
        """The newest call id of a run (an index lookup): changes whenever a call is recorded."""
        return self.conn.execute("SELECT MAX(id) FROM llm_calls WHERE run_id = ?", (run_id,)).fetchone()[0]

    # -- the calls behind a tree or a benchmark case --------------------------
    def of_tree(self, tree_id: int) -> list[CallRow]:
        return [_call(r) for r in self.conn.execute(
            f"SELECT {_CALL_COLS} FROM llm_calls WHERE tree_id = ? ORDER BY id", (tree_id,))]

    def of_case(self, case_id: int) -> list[CallRow]:
        return [_call(r) for r in self.conn.execute(
            f"SELECT {_CALL_COLS} FROM llm_calls WHERE case_id = ? ORDER BY id", (case_id,))]
