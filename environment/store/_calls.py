"""Calls: every statement on ``llm_calls`` and ``llm_cache``.

The totals of a run's calls (calls, tokens, retries, failed and cached
calls) have their one home here: ``Calls.totals`` for one run and
``Calls.totals_by_run`` for all, from the same select list.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...core import safe_text
from ._rows import loads, row_as

__all__ = ["CallOutcomeRow", "CallRow", "CallTotals", "Calls", "ModelCost", "NewCall", "RoleTotals", "RunCost",
           "dollars_text"]

_CALL_COLS = ("id, role, model, endpoint, tree_id, turn, branch, case_id, request, response, prompt_tokens,"
              " completion_tokens, latency_s, attempts, cached, error, created_at")
# one row of totals over a set of calls
_TOTALS = ("COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
           " COALESCE(SUM(completion_tokens), 0) AS completion_tokens,"
           " COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS retries,"
           " COALESCE(SUM(error IS NOT NULL), 0) AS failures, COALESCE(SUM(cached), 0) AS cached,"
           " COALESCE(SUM(finish_reason = 'length'), 0) AS truncated,"
           " SUM(cost_usd) AS cost_usd, COALESCE(SUM(cost_usd IS NULL), 0) AS unpriced")
# dollars of a set of calls: the sum of the known prices (NULL when none is known) and how many are unknown
_COST = "SUM(cost_usd) AS cost_usd, COALESCE(SUM(cost_usd IS NULL), 0) AS unpriced"


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
    latency_s: float | None
    attempts: int
    cached: bool
    error: str | None
    cache_key: str | None
    finish_reason: str | None = None  # "stop", "length" (cut at max_tokens or max_reply_chars), ...; None = unknown
    cost_usd: float | None = None  # US dollars; None = unknown (never guessed), 0 = free or cached
    batch_id: str | None = None  # the provider batch that answered it; None = online or cached


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
    truncated: int = 0  # replies that ended with finish_reason "length" (cut at max_tokens or max_reply_chars)
    cost_usd: float | None = None  # the sum of the known prices; None = no call has a known price
    unpriced: int = 0  # calls whose price is unknown (not in cost_usd)


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
    cost_usd: float | None = None  # the sum of the known prices; None = none known
    unpriced: int = 0  # calls whose price is unknown


@dataclass(frozen=True, slots=True)
class ModelCost:
    """One model's calls and dollars in a run (``cost_usd`` None: no known price)."""

    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    unpriced: int


@dataclass(frozen=True, slots=True)
class CallOutcomeRow:
    """How a call that made a node ended (the quality checks' truncation):
    ``finish_reason`` None = unknown (not recorded, or a schema without it)."""

    tree_id: int
    turn: int | None
    branch: str | None
    role: str
    completion_tokens: int | None
    finish_reason: str | None
    max_tokens: int | None  # what the request allowed


def dollars_text(cost_usd: float | None, unpriced: int = 0) -> str:
    """Dollars as shown to people: ``$0.0123``; ``unknown`` when no call had a known price; the known
    part ``+ N calls unknown`` when some had none (an unknown price is never shown as $0)."""
    if cost_usd is None:
        return "unknown" if unpriced else "$0"
    text = f"${cost_usd:,.2f}" if cost_usd >= 100 else f"${cost_usd:.4g}" if cost_usd else "$0"
    return f"{text} + {unpriced} call{'s' if unpriced != 1 else ''} unknown" if unpriced else text


@dataclass(frozen=True, slots=True)
class RunCost:
    """A run's dollars: in total, per role and per model (``None``: no known price)."""

    cost_usd: float | None
    unpriced: int
    by_role: tuple[RoleTotals, ...]
    by_model: tuple[ModelCost, ...]

    def as_dict(self) -> dict[str, Any]:
        """The summary-line fields: ``cost_usd`` (null = unknown), ``unpriced_calls``, and per role and model
        ``{"cost_usd": ..., "unpriced_calls": ...}``."""
        def one(cost: float | None, unpriced: int) -> dict[str, Any]:
            return {"cost_usd": None if cost is None else round(cost, 6), "unpriced_calls": unpriced}

        return {**one(self.cost_usd, self.unpriced),
                "cost_by_role": {r.role: one(r.cost_usd, r.unpriced) for r in self.by_role},
                "cost_by_model": {m.model: one(m.cost_usd, m.unpriced) for m in self.by_model}}

    def text(self) -> str:
        return dollars_text(self.cost_usd, self.unpriced)


# successful calls of the roles whose replies make a node (the preference judge's are not joined)
_OUTCOMES_FROM = ("FROM trees t JOIN llm_calls c ON c.tree_id = t.id WHERE t.run_id = ? AND (? OR t.status = 'complete')"
             " AND t.id <= ? AND c.error IS NULL AND c.role IN ('user', 'inducer', 'preferred', 'rejected')"
             " ORDER BY c.tree_id, c.id")
_OUTCOME_COLS = ("SELECT c.tree_id, c.turn, c.branch, c.role, c.completion_tokens,"
                 " json_extract(c.request, '$.max_tokens') AS max_tokens, ")
_OUTCOMES = _OUTCOME_COLS + "c.finish_reason " + _OUTCOMES_FROM
_OUTCOMES_UNKNOWN = _OUTCOME_COLS + "NULL AS finish_reason " + _OUTCOMES_FROM  # a schema without finish_reason


def _call(row: sqlite3.Row) -> CallRow:
    return row_as(CallRow, row, request=loads(row["request"]), cached=bool(row["cached"]))


def _totals(row: sqlite3.Row) -> CallTotals:
    counts = (int(row[k]) for k in ("calls", "prompt_tokens", "completion_tokens", "retries", "failures", "cached",
                                    "truncated"))
    return CallTotals(*counts, cost_usd=row["cost_usd"], unpriced=int(row["unpriced"]))


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
            " created_at, finish_reason, cost_usd, batch_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call.run_id, call.role, call.endpoint, call.model, call.tree_id, call.turn, call.branch, call.case_id,
             safe_text(json.dumps(call.request, ensure_ascii=False)), call.response, call.prompt_tokens,
             call.completion_tokens, call.latency_s, call.attempts, int(call.cached), call.error, call.cache_key,
             time.time(), call.finish_reason, call.cost_usd, call.batch_id))
        if cache is not None:  # JSON text fit to store (a lone surrogate in a reply would fail the write)
            self.conn.execute("INSERT OR IGNORE INTO llm_cache (key, response, created_at) VALUES (?,?,?)",
                              (cache[0], safe_text(json.dumps(cache[1], ensure_ascii=False)), time.time()))

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
            f" AVG(latency_s) AS mean_latency_s, MAX(latency_s) AS max_latency_s, {_COST}"
            " FROM llm_calls WHERE run_id = ? GROUP BY role ORDER BY role", (run_id,))
        return [row_as(RoleTotals, r) for r in rows]

    def by_model(self, run_id: int) -> list[ModelCost]:
        """Per-model calls, tokens and dollars of a run, by model name."""
        rows = self.conn.execute(
            "SELECT model, COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            f" COALESCE(SUM(completion_tokens), 0) AS completion_tokens, {_COST}"
            " FROM llm_calls WHERE run_id = ? GROUP BY model ORDER BY model", (run_id,))
        return [row_as(ModelCost, r) for r in rows]

    def cost(self, run_id: int) -> RunCost:
        """A run's dollars, in total and per role and model."""
        roles, models = self.by_role(run_id), self.by_model(run_id)
        known = [r.cost_usd for r in roles if r.cost_usd is not None]
        total = sum(known) if known or not roles else None
        return RunCost(total if roles else 0.0, sum(r.unpriced for r in roles), tuple(roles), tuple(models))

    def spent(self, run_id: int) -> float:
        """The dollars of a run's calls with a known price (0 when none)."""
        return float(self.conn.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE run_id = ?",
                                       (run_id,)).fetchone()[0])

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

    # -- how the calls behind a run's nodes ended (quality checks) --------------
    def records_finish_reason(self) -> bool:
        """Whether ``llm_calls`` has the ``finish_reason`` column."""
        return any(row[1] == "finish_reason" for row in self.conn.execute("PRAGMA table_info(llm_calls)"))

    def outcomes(self, run_id: int, *, include_incomplete: bool,
                 max_tree_id: int | None = None) -> Iterator[CallOutcomeRow]:
        """Successful user/inducer/preferred/rejected calls of the run's trees (complete ones unless
        ``include_incomplete``; up to ``max_tree_id``), by tree then call id, read row by row."""
        sql = _OUTCOMES if self.records_finish_reason() else _OUTCOMES_UNKNOWN
        cur = self.conn.execute(sql, (run_id, int(include_incomplete), max_tree_id or (1 << 63) - 1))
        for row in cur:
            mt = row["max_tokens"]
            yield row_as(CallOutcomeRow, row, max_tokens=mt if isinstance(mt, int) else None)
