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
        row = (
            run_id, call.role, call.endpoint, call.model, ctx.tree_id, ctx.turn, ctx.branch, ctx.case_id,
            json.dumps(call.request, ensure_ascii=False), call.response, call.prompt_tokens,
            call.completion_tokens, call.latency_s, call.attempts, int(call.cached), call.error,
            call.cache_key, time.time(),
        )
        cache_row = None
        if cache_value is not None and call.cache_key is not None:
            cache_row = (call.cache_key, json.dumps(cache_value, ensure_ascii=False), time.time())
            self._recent[call.cache_key] = cache_value
            if len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, case_id, request,"
                " response, prompt_tokens, completion_tokens, latency_s, attempts, cached, error, cache_key,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            if cache_row is not None:
                conn.execute("INSERT OR IGNORE INTO llm_cache (key, response, created_at) VALUES (?,?,?)", cache_row)

        await self.store.submit(write)
