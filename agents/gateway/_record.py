"""Where the gateway keeps its memory: every call recorded in ``llm_calls``,
replies cached in ``llm_cache``. The gateway sees only the ``Recorder``
protocol; ``StoreRecorder`` is the SQLite implementation."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from ...core import safe_count, safe_seconds, safe_text
from ...environment.store import Store
from ._types import CallContext


@dataclass(frozen=True, slots=True)
class CallRecord:
    role: str
    endpoint: str
    model: str
    context: CallContext | None
    request: dict[str, Any]  # messages and sampling params; never headers or keys
    response: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    cached: bool
    error: str | None
    cache_key: str | None
    finish_reason: str | None = None  # the server's ("stop", "length", ...); None = unknown or failed


class Recorder(Protocol):
    async def lookup(self, key: str) -> dict[str, Any] | None: ...

    async def record(self, call: CallRecord, cache_value: dict[str, Any] | None) -> None: ...


class StoreRecorder:
    """Records calls through the store's writer (no wait for the commit: the
    writer flushes them in order, before any later node commit).

    Replies recorded by this recorder are also kept in memory (the most recent
    ``recent`` of them), so a repeat of a request made a moment ago is a cache
    hit even before the writer has committed the first one."""

    def __init__(self, store: Store, run_id: int | None = None, *, recent: int = 8192) -> None:
        self.store = store
        self.run_id = run_id
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._recent_max = recent

    async def lookup(self, key: str) -> dict[str, Any] | None:
        if key in self._recent:
            return self._recent[key]
        row = await self.store.fetchone("SELECT response FROM llm_cache WHERE key = ?", (key,))
        return None if row is None else json.loads(row[0])

    async def record(self, call: CallRecord, cache_value: dict[str, Any] | None) -> None:
        ctx = call.context or CallContext()
        run_id = ctx.run_id if ctx.run_id is not None else self.run_id
        # values made safe here too, whoever produced the record: a row that cannot be
        # written (an integer past 2^63, a lone surrogate) would fail the run
        row = (
            run_id, call.role, call.endpoint, call.model, ctx.tree_id, ctx.turn, ctx.branch, ctx.case_id,
            safe_text(json.dumps(call.request, ensure_ascii=False)),
            None if call.response is None else safe_text(call.response), safe_count(call.prompt_tokens),
            safe_count(call.completion_tokens), safe_seconds(call.latency_s), safe_count(call.attempts),
            int(call.cached), None if call.error is None else safe_text(call.error), call.cache_key, time.time(),
            None if call.finish_reason is None else safe_text(call.finish_reason)[:40],
        )
        cache_row = None
        if cache_value is not None and call.cache_key is not None:
            cache_row = (call.cache_key, safe_text(json.dumps(cache_value, ensure_ascii=False)), time.time())
            self._recent[call.cache_key] = cache_value
            if len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, case_id, request,"
                " response, prompt_tokens, completion_tokens, latency_s, attempts, cached, error, cache_key,"
                " created_at, finish_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            if cache_row is not None:
                conn.execute("INSERT OR IGNORE INTO llm_cache (key, response, created_at) VALUES (?,?,?)", cache_row)

        await self.store.submit(write, what=f"the record of a {call.role} call")
