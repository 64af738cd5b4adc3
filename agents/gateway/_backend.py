"""One backend: a model behind one or more OpenAI-compatible endpoints.

``Backend.chat`` is the only way roles reach a model. Per call it:
1. answers from the response cache when the same request was made before;
2. waits for the RPM/TPM buckets, picks the endpoint with the fewest
   outstanding requests (skipping, while others are there, an endpoint that
   just timed out, refused or answered an HTTP error: it cools down for
   Retry-After or ``backoff_max`` seconds), and holds that endpoint's
   concurrency limit (fixed, or adaptive: ``backend.adaptive``, see
   ``AdaptiveLimiter``); a managed server that is restarting is waited for;
3. retries timeouts, connection errors, 408/409/429/5xx, malformed bodies
   (see ``parse_reply``: every reply is read there, nothing else trusts it),
   empty replies and structured output that fails its schema (or a
   ``TextOutput``'s ``from_text``) or was cut at ``max_tokens``, with exponential backoff and full jitter, honouring
   ``Retry-After``, within the per-call ``max_retries`` and the run-wide
   retry budget; a redirect or another 4xx is not retried;
4. records the call (request, response, usage, finish reason, latency,
   attempts, error, and its price in dollars from the ``Pricer``: 0 for a
   cached reply or a free backend kind, None when unknown);
5. raises ``LLMError`` (role, endpoint, reason) when it gives up, or the
   ``ServerError`` of a managed server that died for good.

API keys are read from the environment variable named in the settings and
handed straight to the SDK client; they never enter a record, a log line or
an error message, and neither does a server's echo of one (see ``redactor``).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx2
import openai
import structlog
from pydantic import BaseModel, ValidationError

from ...core import plain_json
from ...core.errors import ConfigError, LLMError, MissingKeyError, ServerError, StructuredOutputError
from ._cache import request_key
from ._endpoint import NO_KEY, POOL_PER_CLIENT, Endpoint, EndpointGuard, redirect_origin
from ._faults import RETRY_STATUS, Retryable, first_error, redactor, retry_after, short
from ._limits import RetryBudget, TokenBucket
from ._outputs import is_text_output, read_cached, request_schema, response_format, schema_json
from ._pricing import Pricer
from ._record import CallRecord, Recorder
from ._reply import MalformedReply, parse_reply
from ._settings import BackendSettings
from ._spend import CALL_GATE, LimitReached, SpendGate, SpendLimit
from ._types import CallContext, ChatResult, Sampling

__all__ = ["POOL_PER_CLIENT", "Backend", "response_format", "schema_json"]

log = structlog.get_logger(__name__)

_STRUCTURED = "invalid structured output"


class Backend:
    """A ``ChatModel`` over the endpoints of one backend."""

    def __init__(
        self,
        settings: BackendSettings,
        urls: list[str] | tuple[str, ...],
        *,
        name: str | None = None,
        recorder: Recorder | None = None,
        cache: bool = True,
        budget: RetryBudget | None = None,
        seed: int = 0,
        transport: httpx2.AsyncBaseTransport | None = None,
        guards: Mapping[str, EndpointGuard] | None = None,
        pricer: Pricer | None = None,
        spend: SpendLimit | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("backend.base_url", None, "at least one endpoint URL")
        api_key = NO_KEY
        if settings.api_key_env:
            api_key = os.environ.get(settings.api_key_env, "")
            if not api_key:
                raise MissingKeyError("backend.api_key_env", settings.api_key_env)
        self.settings = settings
        self.name = name or settings.model
        self.model = settings.model
        guards = guards or {}
        floor = settings.min_concurrency if settings.adaptive else None
        self.endpoints = [Endpoint(u, api_key, settings.concurrency, settings.timeout, transport, guards.get(u),
                                   floor) for u in urls]
        self.recorder = recorder
        self.cache = cache
        self.budget = budget or RetryBudget(settings.retry_budget)
        self.rpm = TokenBucket(settings.rpm) if settings.rpm else None
        self.tpm = TokenBucket(settings.tpm) if settings.tpm else None
        self._rng = random.Random(seed)
        self.pricer = pricer or Pricer()
        self.spend = spend  # budget.usd: no call starts once the run's spend reaches it
        self.stats = {"calls": 0, "cached": 0, "retries": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
        # a server may echo the key (or a masked form of it) in an error body: such text is
        # scrubbed before it is logged, recorded or raised (the key itself lives only in the SDK clients)
        self._redact = redactor(api_key if api_key != NO_KEY else None)
        del api_key

    async def aclose(self) -> None:
        for ep in self.endpoints:
            await ep.aclose()

    @property
    def peak_in_flight(self) -> int:
        return max(ep.limit.peak for ep in self.endpoints)

    def limits(self) -> dict[str, Any]:
        """The in-flight limit now: ``limit`` (summed over the endpoints), ``max`` (the sum of the
        ceilings), ``adaptive``; adaptive adds ``cuts``, ``refusals`` and each endpoint's counters."""
        out: dict[str, Any] = {"model": self.name, "adaptive": self.settings.adaptive,
                               "limit": sum(ep.limit.total for ep in self.endpoints),
                               "max": self.settings.concurrency * len(self.endpoints)}
        adaptive = [ep.adaptive for ep in self.endpoints if ep.adaptive is not None]
        if adaptive:
            out |= {"cuts": sum(a.cuts for a in adaptive), "refusals": sum(a.refusals for a in adaptive),
                    "endpoints": {ep.base_url: ep.adaptive.as_dict() for ep in self.endpoints if ep.adaptive}}
        return out

    def _pick(self) -> Endpoint:
        """The endpoint with the fewest outstanding requests, among those not cooling
        down after a failure (all of them when every one is)."""
        now = time.monotonic()
        healthy = [ep for ep in self.endpoints if ep.cool_until <= now] or self.endpoints
        return min(healthy, key=lambda ep: ep.outstanding)

    def _clip(self, text: str, limit: int = 200) -> str:
        """Server or model text made fit for a reason: key scrubbed first, then shortened."""
        return short(self._redact(str(text)), limit)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.settings.backoff_max, self.settings.backoff_base * (2 ** (attempt - 1)))
        return self._rng.uniform(0, cap)

    def _from_cache(self, hit: Any, schema: type[BaseModel] | None) -> ChatResult | None:
        """The cached reply as a result, or None when the entry is unusable (then it is a miss)."""
        try:
            parsed, entry = read_cached(schema, hit)
            if entry is None:
                return None
            text = hit["text"]
            finish = hit.get("finish_reason")
            return ChatResult(text=text, parsed=parsed, prompt_tokens=int(hit.get("prompt_tokens", 0)),
                              completion_tokens=int(hit.get("completion_tokens", 0)), attempts=0, cached=True,
                              endpoint=str(hit.get("endpoint", "cache")), model=self.model,
                              finish_reason=finish if isinstance(finish, str) else None,
                              extra=extra if isinstance(extra := hit.get("extra", {}), dict) else {})
        except (KeyError, TypeError, ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
            return None

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        role: str,
        sampling: Sampling | None = None,
        schema: type[BaseModel] | None = None,
        context: CallContext | None = None,
    ) -> ChatResult:
        sampling = sampling or Sampling()
        params = sampling.as_params()
        schema_js = schema_json(schema) if schema is not None and not is_text_output(schema) else None
        key = request_key(self.model, messages, params, request_schema(schema))
        request = {"model": self.model, "messages": messages, **params}
        if schema_js is not None:
            request["schema"] = schema_js
        self.stats["calls"] += 1

        if self.cache and self.recorder is not None:
            hit = await self.recorder.lookup(key)
            result = self._from_cache(hit, schema) if hit is not None else None
            if result is not None:
                self.stats["cached"] += 1
                await self.recorder.record(
                    CallRecord(role, "cache", self.model, context, request, result.text, result.prompt_tokens,
                               result.completion_tokens, 0.0, 0, True, None, key, result.finish_reason, 0.0),
                    None,
                )
                return result

        if self.spend is None:
            return await self._call(messages, role, sampling, schema, context, params, key, request)
        gate = SpendGate(self.spend)
        token = CALL_GATE.set(gate)  # _post opens it at the call's first request
        cost = self._failed_price()
        try:
            result = await self._call(messages, role, sampling, schema, context, params, key, request)
            cost = self.price(result.prompt_tokens, result.completion_tokens)
            return result
        except LimitReached:  # budget.usd: never sent; waits until the run's work is cancelled
            await self.spend.wait_at_limit()
            raise
        finally:
            CALL_GATE.reset(token)
            gate.close(cost)

    async def _call(self, messages: list[dict[str, str]], role: str, sampling: Sampling,
                    schema: type[BaseModel] | None, context: CallContext | None, params: dict[str, Any], key: str,
                    request: dict[str, Any]) -> ChatResult:
        """One call past the cache: attempts and retries until an answer or giving up; recorded."""
        start = time.monotonic()
        attempt = 0
        endpoint = self.endpoints[0]
        max_tokens = sampling.max_tokens
        while True:
            attempt += 1
            endpoint = self._pick()
            try:
                tries = params | {"max_tokens": max_tokens}
                if attempt > 1 and "seed" in params:
                    tries["seed"] = params["seed"] + attempt - 1  # a retry must not replay the same sample
                result = await self._attempt(endpoint, messages, tries, schema, role)
            except Retryable as exc:
                reason = self._redact(exc.reason)
                if exc.endpoint_fault and len(self.endpoints) > 1:
                    cool = exc.retry_after if exc.retry_after is not None else self.settings.backoff_max
                    endpoint.cool_until = time.monotonic() + min(cool, 120.0)
                if attempt > self.settings.max_retries or not self.budget.take():
                    if exc.endpoint_fault and endpoint.guard is not None:
                        try:  # a managed server that is gone for good is the run's error, not this call's
                            await endpoint.guard.usable()
                        except ServerError as gone:
                            await self._fail(role, endpoint, context, request, key, start, attempt, str(gone))
                            raise
                    why = "retries exhausted" if attempt > self.settings.max_retries else "run retry budget exhausted"
                    await self._fail(role, endpoint, context, request, key, start, attempt, f"{reason} ({why})")
                    err_cls = StructuredOutputError if reason.startswith(_STRUCTURED) else LLMError
                    raise err_cls(role, endpoint.base_url, f"{reason} ({why})", attempt) from None
                self.stats["retries"] += 1
                if reason.startswith(_STRUCTURED) and max_tokens < 4 * sampling.max_tokens:
                    max_tokens *= 2  # a cut-off JSON reply needs room, not luck
                delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                log.debug("llm.retry", role=role, endpoint=endpoint.base_url, attempt=attempt, reason=reason,
                          delay=round(delay, 3))
                await anyio.sleep(min(delay, 120.0))
                continue
            except LLMError as exc:
                reason = self._redact(exc.reason)
                await self._fail(role, endpoint, context, request, key, start, attempt, reason)
                raise LLMError(role, endpoint.base_url, reason, attempt) from None
            except ServerError as exc:  # the managed server behind the endpoint is gone for good
                await self._fail(role, endpoint, context, request, key, start, attempt, str(exc))
                raise
            latency = time.monotonic() - start
            result = ChatResult(
                text=result.text, parsed=result.parsed, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens, latency_s=latency, attempts=attempt,
                cached=False, endpoint=endpoint.base_url, model=self.model, finish_reason=result.finish_reason,
                extra=result.extra,
            )
            self.stats["prompt_tokens"] += result.prompt_tokens
            self.stats["completion_tokens"] += result.completion_tokens
            if (gate := CALL_GATE.get()) is not None:  # budget.usd: counted before any other call may start
                gate.charge(self.price(result.prompt_tokens, result.completion_tokens))
            if self.recorder is not None:
                cache_value = None
                if self.cache:
                    cache_value = {"text": result.text, "prompt_tokens": result.prompt_tokens,
                                   "completion_tokens": result.completion_tokens, "endpoint": endpoint.base_url,
                                   "finish_reason": result.finish_reason, "extra": result.extra}
                await self.recorder.record(
                    CallRecord(role, endpoint.base_url, self.model, context, request, result.text,
                               result.prompt_tokens, result.completion_tokens, latency, attempt, False, None, key,
                               result.finish_reason, self.price(result.prompt_tokens, result.completion_tokens)),
                    cache_value,
                )
            return result

    async def _fail(self, role: str, endpoint: Endpoint, context: CallContext | None, request: dict, key: str,
                    start: float, attempt: int, reason: str) -> None:
        self.stats["failures"] += 1
        log.warning("llm.failed", role=role, endpoint=endpoint.base_url, attempts=attempt, reason=reason)
        if self.recorder is not None:
            await self.recorder.record(
                CallRecord(role, endpoint.base_url, self.model, context, request, None, 0, 0,
                           time.monotonic() - start, attempt, False, reason, key, None, self._failed_price()),
                None,
            )

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Dollars of one answered call of this backend's model (None: unknown)."""
        return self.pricer.price(self.model, prompt_tokens, completion_tokens, kind=self.settings.kind)

    def _failed_price(self) -> float | None:
        """A failed call is free on a free backend; elsewhere unknown (what a provider bills for a
        failed attempt is not reported)."""
        return 0.0 if self.pricer.source(self.model, kind=self.settings.kind) == "free" else None

    async def _post(self, ep: Endpoint, kwargs: dict[str, Any], role: str) -> httpx2.Response:
        """One POST, every way it can fail turned into ``Retryable`` or ``LLMError``."""
        guard = ep.guard
        try:
            if guard is not None:
                await guard.usable()  # waits while a managed server restarts; ServerError when it is gone
            async with ep.limit:
                if (gate := CALL_GATE.get()) is not None:
                    gate.open()  # budget.usd: a call's first request is not sent once the limit is reached
                return await ep.post(kwargs, deadline=self.settings.timeout + 10)
        except (TimeoutError, openai.APITimeoutError):
            if guard is not None:
                guard.trouble()
            raise Retryable("timeout", endpoint_fault=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            if 300 <= status < 400:  # never followed: the prompt stays with this endpoint
                target = redirect_origin(exc.response.headers.get("location"))
                raise LLMError(role, ep.base_url, f"HTTP {status} redirect to {target} not followed"
                                                  " (a model call never leaves its endpoint)") from None
            if status in RETRY_STATUS:
                raise Retryable(f"HTTP {status}", retry_after(exc.response.headers), endpoint_fault=True) from None
            raise LLMError(role, ep.base_url, f"HTTP {status}: {self._clip(exc.message)}") from None
        except (openai.APIConnectionError, httpx2.HTTPError, OSError) as exc:
            if guard is not None:
                guard.trouble()
            cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) and exc.__cause__ else exc
            detail = str(cause) or type(cause).__name__
            raise Retryable(f"connection error: {self._clip(detail)}", endpoint_fault=True) from None
        except openai.OpenAIError as exc:  # anything else the SDK makes of a reply
            raise Retryable(f"malformed response: {self._clip(str(exc))}") from None

    async def _attempt(self, ep: Endpoint, messages: list[dict[str, str]], params: dict[str, Any],
                       schema: type[BaseModel] | None, role: str) -> ChatResult:
        if self.rpm is not None:
            await self.rpm.take(1)
        estimate = sum(len(m.get("content", "")) for m in messages) / 4 + params.get("max_tokens", 0)
        if self.tpm is not None:
            await self.tpm.take(estimate)
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, **params}
        if schema is not None and not is_text_output(schema):
            kwargs["response_format"] = response_format(schema, self.settings.dialect)
        ep.outstanding += 1
        try:
            resp = await self._post(ep, kwargs, role)
        finally:
            ep.outstanding -= 1
        try:
            reply = parse_reply(resp.content, max_chars=self.settings.max_reply_chars)
        except MalformedReply as exc:
            raise Retryable(f"malformed response: {self._clip(exc.reason)}") from None
        if self.tpm is not None:
            self.tpm.charge(reply.prompt_tokens + reply.completion_tokens - estimate)
        if ep.adaptive is not None:
            ep.adaptive.used_tokens(reply.prompt_tokens + reply.completion_tokens)
        return self.accept(reply, params, schema, role, ep.base_url)

    def accept(self, reply: Any, params: dict[str, Any], schema: type[BaseModel] | None, role: str,
               where: str) -> ChatResult:
        """The result of a parsed ``Reply`` (also a batch's), or ``Retryable`` when it is empty,
        cut short or fails its schema."""
        if reply.cut_chars:
            log.warning("llm.reply_capped", role=role, endpoint=where, kept=len(reply.text),
                        dropped=reply.cut_chars)
        text = self._redact(reply.text)
        if not text.strip():
            raise Retryable("empty reply")
        extra = {"logprobs": reply.logprobs} if reply.logprobs is not None else {}
        parsed = None
        if is_text_output(schema):
            try:
                parsed = schema.from_text(text)  # type: ignore[union-attr]
            except ValueError as exc:
                raise Retryable(f"{_STRUCTURED} (plain text): {self._clip(str(exc))}; reply was "
                                f"{self._clip(text, 120)!r}") from None
        elif schema is not None:
            if reply.finish_reason == "length":
                raise Retryable(f"{_STRUCTURED}: cut off at max_tokens={params.get('max_tokens')}"
                                " (finish_reason=length)")
            try:
                # strict=False: llama.cpp's grammar lets raw newlines into strings; plain_json:
                # an escaped lone surrogate in the JSON is made safe like any other text
                parsed = schema.model_validate(plain_json(json.loads(text, strict=False)))
            except (ValueError, RecursionError) as exc:  # JSONDecodeError and ValidationError are ValueErrors
                if isinstance(exc, ValidationError):
                    detail = first_error(exc)
                elif isinstance(exc, json.JSONDecodeError):
                    detail = str(exc).splitlines()[0]
                else:
                    detail = type(exc).__name__
                raise Retryable(f"{_STRUCTURED}: {self._clip(detail)}; reply was {self._clip(text, 120)!r}") from None
            text = parsed.model_dump_json()
        return ChatResult(text=text, parsed=parsed, prompt_tokens=reply.prompt_tokens,
                          completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason, extra=extra)
