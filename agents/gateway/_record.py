"""Where the gateway keeps its memory: every call recorded in ``llm_calls``,
replies cached in ``llm_cache``. The gateway sees only the ``Recorder``
protocol; ``StoreRecorder`` is the SQLite implementation."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from ...core import safe_count, safe_seconds, safe_text
from ...environment.store import Calls, NewCall, Store
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
    cost_usd: float | None = None  # US dollars (see Pricer); None = unknown, 0 = free or cached
    batch_id: str | None = None  # the provider batch that answered it (batch mode); None = online or cached


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
        return await self.store.read(lambda c: Calls(c).cached(key))

    async def record(self, call: CallRecord, cache_value: dict[str, Any] | None) -> None:
        ctx = call.context or CallContext()
        run_id = ctx.run_id if ctx.run_id is not None else self.run_id
        # values made safe here too, whoever produced the record: a row that cannot be
        # written (an integer past 2^63, a lone surrogate) would fail the run
        new = NewCall(
            run_id, call.role, call.endpoint, call.model, ctx.tree_id, ctx.turn, ctx.branch, ctx.case_id,
            call.request, None if call.response is None else safe_text(call.response),
            safe_count(call.prompt_tokens), safe_count(call.completion_tokens), safe_seconds(call.latency_s),
            safe_count(call.attempts), call.cached, None if call.error is None else safe_text(call.error),
            call.cache_key, None if call.finish_reason is None else safe_text(call.finish_reason)[:40],
            call.cost_usd if call.cost_usd is None or call.cost_usd >= 0 else None, call.batch_id,
        )
        cache = None
        if cache_value is not None and call.cache_key is not None:
            cache = (call.cache_key, cache_value)
            self._recent[call.cache_key] = cache_value
            if len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)

        await self.store.submit(lambda c: Calls(c).add(new, cache), what=f"the record of a {call.role} call")
