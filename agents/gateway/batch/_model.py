"""``BatchModel``: a ``ChatModel`` whose calls go through a provider's batch
API in turn waves.

A call joins the open **wave** of its role (every tree in flight asks each
role once per turn: the user turns of all trees, then all inducer and
rejected calls, then all preferred calls). The first caller of a wave leads
it: it waits until the wave is full, i.e. holds ``expected()`` requests (the
generation run sets it to the number of trees in flight), or until every
tree in flight has a call waiting on this model (in some role's open wave or
in a submitted batch: nobody else can ask) and no call joined for
``SETTLE_S``, or until no call joined and no result was handed out for
``window`` seconds (a tree busy elsewhere, e.g. committing its node, is
waited for that long; calls that keep coming keep it open, at most one per
tree in flight), whichever is first;
then it closes the wave (later calls open the next one), splits it into
files at the provider's limits, uploads and submits each, records each
submitted batch with the cache keys of its requests in the store BEFORE it
waits, polls with doubling delays, downloads the output and error files and
hands every waiting caller its result, as if it had come online. The roles
and the bus do not change.

No deadlock: a wave waits at most ``window`` seconds past the last activity
(a bounded number of joins and hand-outs), and the
generation run gives a role actor on a batch backend as many workers as
trees in flight (``max_trees_in_flight``), so every tree that can ask can be
in the wave at once: waves are full in the common case. (With fewer workers
a wave would hold only the actor's concurrency and close by its window.)

A request that failed, expired or was cancelled inside a batch, or whose
reply fails its schema, is retried (``retry=wave``: in the role's next wave,
with the seed moved on as an online retry moves it; ``retry=online``: by
the online gateway), within ``max_retries`` and the run's retry budget; when
they are spent the call fails with an ``LLMError`` and is recorded failed:
never lost. Cache hits are answered at once and never sent. A re-run finds,
by cache key, the batch a killed run submitted for the same requests and
waits for it instead of submitting again. Calls are priced at batch rates.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import structlog
from pydantic import BaseModel

from ....core.errors import LLMError, StructuredOutputError
from ....environment.store import Batches, Store
from .._backend import Backend
from .._batch_settings import BatchSettings
from .._cache import request_key
from .._faults import Retryable
from .._outputs import is_text_output, request_schema, response_format, schema_json
from .._record import CallRecord
from .._reply import MalformedReply, parse_reply
from .._types import CallContext, ChatResult, Sampling
from ._provider import BatchLine, BatchProvider, BatchStatus, request_line, split_lines

__all__ = ["BatchModel"]

log = structlog.get_logger(__name__)

SETTLE_S = 0.05  # a wave that is not full closes once every tree waits and no call joined for this long


@dataclass(eq=False)
class _Item:
    role: str
    key: str
    messages: list[dict[str, str]]
    sampling: Sampling
    params: dict[str, Any]
    schema: type[BaseModel] | None
    context: CallContext | None
    request: dict[str, Any]
    start: float = field(default_factory=time.monotonic)
    attempt: int = 1
    done: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)  # done, or handed a wave to lead
    lead: _Wave | None = None
    counted: bool = False  # its tree is counted as waiting on the model
    result: ChatResult | None = None
    error: LLMError | None = None
    online: bool = False

    @property
    def tree(self) -> Any:
        """What waits on this call: its tree (a call without one stands for itself)."""
        return self.context.tree_id if self.context is not None and self.context.tree_id is not None else id(self)

    def body(self, model: str, dialect: str) -> dict[str, Any]:
        """The chat completion request of this attempt (as the online gateway sends it)."""
        params = dict(self.params)
        if self.attempt > 1 and "seed" in params:
            params["seed"] = params["seed"] + self.attempt - 1  # a retry must not replay the same sample
        body: dict[str, Any] = {"model": model, "messages": self.messages, **params}
        if self.schema is not None and not is_text_output(self.schema):
            body["response_format"] = response_format(self.schema, dialect)
        return body


@dataclass(eq=False)
class _Wave:
    role: str
    items: list[_Item] = field(default_factory=list)
    full: anyio.Event = field(default_factory=anyio.Event)
    opened: float = field(default_factory=time.monotonic)


class BatchModel:
    """A ``ChatModel`` over ``backend``'s model through ``provider``'s batch API (see the module docstring)."""

    collects_waves = True

    def __init__(self, backend: Backend, provider: BatchProvider, settings: BatchSettings,
                 store: Store | None = None) -> None:
        self.backend, self.provider, self.settings, self.store = backend, provider, settings, store
        self.name, self.model = backend.name, backend.model
        self.expected: Callable[[], int] | None = None  # how many callers can ask per wave (trees in flight)
        self.waves = 0
        self.batch_states: dict[str, str] = {}
        self._open: dict[str, _Wave] = {}
        self._waiting: dict[Any, int] = {}  # tree (or call) -> its calls waiting on this model
        self._last_activity = 0.0

    @property
    def stats(self) -> dict[str, Any]:
        return self.backend.stats

    def progress(self) -> dict[str, Any]:
        """Waves so far and how many batches are in each state."""
        return {"waves": self.waves, "batches": dict(Counter(self.batch_states.values()))}

    async def aclose(self) -> None:
        await self.provider.aclose()

    # -- one call ----------------------------------------------------------
    async def chat(self, messages: list[dict[str, str]], *, role: str, sampling: Sampling | None = None,
                   schema: type[BaseModel] | None = None, context: CallContext | None = None) -> ChatResult:
        b = self.backend
        sampling = sampling or Sampling()
        params = sampling.as_params()
        key = request_key(b.model, messages, params, request_schema(schema))
        request = {"model": b.model, "messages": messages, **params}
        if schema is not None and not is_text_output(schema):
            request["schema"] = schema_json(schema)
        if b.cache and b.recorder is not None:
            hit = await b.recorder.lookup(key)
            result = b._from_cache(hit, schema) if hit is not None else None
            if result is not None:
                b.stats["calls"] += 1
                b.stats["cached"] += 1
                await b.recorder.record(
                    CallRecord(role, "cache", b.model, context, request, result.text, result.prompt_tokens,
                               result.completion_tokens, 0.0, 0, True, None, key, result.finish_reason, 0.0), None)
                return result
        item = _Item(role, key, messages, sampling, params, schema, context, request)
        item.lead = self._join(item)
        while True:  # lead the waves handed to this call (the one it opened, or a wave of retries), until done
            if item.lead is not None:
                wave, item.lead = item.lead, None
                await self._lead(wave)
                continue
            if item.done.is_set():
                break
            await item.wake.wait()
            item.wake = anyio.Event()
        if item.online:  # retry=online: the online gateway takes over (its own retries, record and cache)
            return await b.chat(messages, role=role, sampling=sampling, schema=schema, context=context)
        b.stats["calls"] += 1
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _all_waiting(self) -> bool:
        """Every tree in flight has a call waiting on this model (in an open wave or a batch)."""
        return self.expected is not None and len(self._waiting) >= self.expected()

    def _resolve(self, item: _Item) -> None:
        """``item`` has its outcome: wake its caller."""
        self._last_activity = time.monotonic()  # activity: its tree will ask again soon
        self._settle(item)
        item.done.set()
        item.wake.set()

    def _settle(self, item: _Item) -> None:
        """``item``'s tree no longer waits on it (its outcome is known; until it asks again)."""
        if not item.counted:
            return
        item.counted = False
        left = self._waiting.get(item.tree, 0) - 1
        if left > 0:
            self._waiting[item.tree] = left
        else:
            self._waiting.pop(item.tree, None)

    def _join(self, item: _Item) -> _Wave | None:
        """Put ``item`` in its role's open wave; the wave when this call opened it (then it leads it)."""
        wave = self._open.get(item.role)
        opened = wave is None
        if wave is None:
            wave = self._open[item.role] = _Wave(item.role)
        wave.items.append(item)
        self._last_activity = time.monotonic()
        if not item.counted:
            item.counted = True
            self._waiting[item.tree] = self._waiting.get(item.tree, 0) + 1
        if self.expected is not None and len(wave.items) >= self.expected():
            wave.full.set()
        return wave if opened else None

    async def _lead(self, wave: _Wave) -> None:
        """Close ``wave`` when full (or every tree waits, or no call came for ``window``), run it, and
        requeue what must be retried (a new wave is led by the caller of a request in it)."""
        while not wave.full.is_set():
            now = time.monotonic()
            deadline = max(wave.opened, self._last_activity) + self.settings.window
            if now >= deadline:
                break
            if self._all_waiting() and now - self._last_activity >= SETTLE_S:
                break  # every tree in flight waits on this model: nobody else can ask
            with anyio.move_on_after(min(SETTLE_S, deadline - now)):
                await wave.full.wait()
        if self._open.get(wave.role) is wave:
            del self._open[wave.role]
        self.waves += 1
        retry: list[_Item] = []
        try:
            retry = await self._run(wave)
        finally:
            requeued = {id(item) for item in retry}
            for item in wave.items:  # an AloeError (the store, a bug) stops the run: nobody is left waiting
                if not item.done.is_set() and id(item) not in requeued:
                    item.error = item.error or LLMError(item.role, self.provider.name, "the batch run stopped")
                    self._resolve(item)
        for item in retry:
            opened = self._join(item)
            if opened is not None:  # led by the caller of a request in it, so this call can go on
                item.lead = opened
                item.wake.set()

    # -- one wave ----------------------------------------------------------
    async def _run(self, wave: _Wave) -> list[_Item]:
        groups: dict[str, list[_Item]] = {}
        for item in wave.items:
            groups.setdefault(item.key, []).append(item)
        found: dict[str, str] = {}
        fresh = [k for k, items in groups.items() if items[0].attempt == 1]
        if self.store is not None and fresh:
            found = await self.store.read(lambda c: Batches(c).latest(fresh, self.provider.name, self.model))
        adopted: dict[str, list[str]] = {}
        for key, batch_id in found.items():
            adopted.setdefault(batch_id, []).append(key)
        new = [k for k in groups if k not in found]
        s, dialect = self.settings, self.backend.settings.dialect
        files = split_lines([request_line(k, groups[k][0].body(self.model, dialect)) for k in new],
                            s.max_requests, s.max_bytes)
        retry: list[_Item] = []
        log.info("batch.wave", role=wave.role, requests=len(wave.items), files=len(files), resumed=len(adopted),
                 wave=self.waves)
        async with anyio.create_task_group() as tg:
            for batch_id, keys in adopted.items():
                tg.start_soon(self._one, wave.role, batch_id, None, keys, groups, retry)
            start = 0
            for lines in files:
                keys = new[start:start + len(lines)]
                start += len(lines)
                tg.start_soon(self._one, wave.role, None, lines, keys, groups, retry)
        return retry

    async def _one(self, role: str, batch_id: str | None, lines: list[bytes] | None, keys: list[str],
                   groups: dict[str, list[_Item]], retry: list[_Item]) -> None:
        """Submit (``lines``) or resume (``batch_id``) one batch, wait for it, dispatch its results."""
        try:
            if batch_id is None:
                assert lines is not None
                file_id = await self.provider.upload(lines)
                batch_id = await self.provider.submit(file_id)
                self.batch_states[batch_id] = "validating"
                if self.store is not None:  # recorded before waiting: a re-run picks it up
                    await self.store.write(lambda c, b=batch_id: Batches(c).add(
                        b, self.provider.name, self.model, role, keys, "validating"))
            status = await self._wait(batch_id)
            results = {line.custom_id: line for line in await self.provider.results(status)}
        except LLMError as exc:  # the provider refused a step: every request of it counts as a failed attempt
            for key in keys:
                for item in groups[key]:
                    await self._failed(item, exc.reason, batch_id, retry)
            return
        for key in keys:  # outcomes known: these trees will ask again soon, a wave must wait for them
            for item in groups[key]:
                self._settle(item)
        for key in keys:
            line = results.get(key)
            for item in groups[key]:
                await anyio.lowlevel.checkpoint()  # let the answered callers go on (and join waves) meanwhile
                if line is None:
                    await self._failed(item, f"no result (batch {status.state})", batch_id, retry)
                else:
                    await self._answer(item, line, batch_id, retry)

    async def _wait(self, batch_id: str) -> BatchStatus:
        delay = self.settings.poll_initial
        while True:
            status = await self.provider.poll(batch_id)
            if self.batch_states.get(batch_id) != status.state:
                log.info("batch.state", batch_id=batch_id, state=status.state, detail=status.detail or None)
            self.batch_states[batch_id] = status.state
            if status.final:
                if self.store is not None:
                    await self.store.submit(lambda c, st=status.state: Batches(c).set_state(batch_id, st),
                                            what="a batch's state")
                return status
            await anyio.sleep(delay)
            delay = min(delay * 2, self.settings.poll_max)

    async def _answer(self, item: _Item, line: BatchLine, batch_id: str, retry: list[_Item]) -> None:
        b = self.backend
        if line.body is None:
            await self._failed(item, line.error or "failed in the batch", batch_id, retry)
            return
        try:
            reply = parse_reply(line.body, max_chars=b.settings.max_reply_chars)
            result = b.accept(reply, item.body(self.model, b.settings.dialect), item.schema, item.role,
                              f"batch {batch_id}")
        except MalformedReply as exc:
            await self._failed(item, f"malformed response: {b._clip(exc.reason)}", batch_id, retry)
            return
        except Retryable as exc:
            await self._failed(item, b._redact(exc.reason), batch_id, retry)
            return
        latency = time.monotonic() - item.start
        url = b.endpoints[0].base_url
        result = ChatResult(text=result.text, parsed=result.parsed, prompt_tokens=result.prompt_tokens,
                            completion_tokens=result.completion_tokens, latency_s=latency, attempts=item.attempt,
                            cached=False, endpoint=url, model=self.model, finish_reason=result.finish_reason,
                            extra=result.extra)
        b.stats["prompt_tokens"] += result.prompt_tokens
        b.stats["completion_tokens"] += result.completion_tokens
        if b.recorder is not None:
            cache_value = None
            if b.cache:
                cache_value = {"text": result.text, "prompt_tokens": result.prompt_tokens,
                               "completion_tokens": result.completion_tokens, "endpoint": url,
                               "finish_reason": result.finish_reason, "extra": result.extra}
            cost = b.pricer.price(self.model, result.prompt_tokens, result.completion_tokens,
                                  kind=b.settings.kind, batch=True)
            await b.recorder.record(
                CallRecord(item.role, url, self.model, item.context, item.request, result.text, result.prompt_tokens,
                           result.completion_tokens, latency, item.attempt, False, None, item.key,
                           result.finish_reason, cost, batch_id), cache_value)
        item.result = result
        self._resolve(item)

    async def _failed(self, item: _Item, reason: str, batch_id: str | None, retry: list[_Item]) -> None:
        """One failed attempt of ``item``: requeue it (next wave), hand it to the online gateway, or give up."""
        b = self.backend
        if item.attempt <= b.settings.max_retries and b.budget.take():
            b.stats["retries"] += 1
            log.debug("batch.retry", role=item.role, attempt=item.attempt, reason=reason, batch_id=batch_id)
            if self.settings.retry == "online":
                item.online = True
                self._resolve(item)
                return
            item.attempt += 1
            retry.append(item)
            return
        why = "retries exhausted" if item.attempt > b.settings.max_retries else "run retry budget exhausted"
        reason = f"{reason} ({why})"
        b.stats["failures"] += 1
        url = b.endpoints[0].base_url
        log.warning("llm.failed", role=item.role, endpoint=url, attempts=item.attempt, reason=reason,
                    batch_id=batch_id)
        if b.recorder is not None:
            await b.recorder.record(
                CallRecord(item.role, url, self.model, item.context, item.request, None, 0, 0,
                           time.monotonic() - item.start, item.attempt, False, reason, item.key, None,
                           b._failed_price(), batch_id), None)
        err = StructuredOutputError if reason.startswith("invalid structured output") else LLMError
        item.error = err(item.role, url, reason, item.attempt)
        self._resolve(item)
