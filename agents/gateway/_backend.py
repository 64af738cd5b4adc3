"""One backend: a model behind one or more OpenAI-compatible endpoints.

``Backend.chat`` is the only way roles reach a model. Per call it:
1. answers from the response cache when the same request was made before;
2. waits for the RPM/TPM buckets, picks the endpoint with the fewest
   outstanding requests (skipping, while others are there, an endpoint that
   just timed out, refused or answered an HTTP error: it cools down for
   Retry-After or ``backoff_max`` seconds), and holds that endpoint's
   concurrency limit;
3. retries timeouts, connection errors, 408/409/429/5xx, empty replies and
   replies that fail schema validation, with exponential backoff and full
   jitter, honouring ``Retry-After``, within the per-call ``max_retries`` and
   the run-wide retry budget;
4. records the call (request, response, usage, latency, attempts, error);
5. raises ``LLMError`` (role, endpoint, reason) when it gives up.

API keys are read from the environment variable named in the settings and
handed straight to the SDK client; they never enter a record, a log line or
an error message.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import json
import math
import os
import random
import time
from typing import Any

import anyio
import httpx2
import openai
import structlog
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from ...core.errors import ConfigError, LLMError, MissingKeyError, StructuredOutputError
from ._cache import request_key
from ._limits import PeakLimiter, RetryBudget, TokenBucket
from ._record import CallRecord, Recorder
from ._settings import BackendSettings
from ._types import CallContext, ChatResult, Sampling

log = structlog.get_logger(__name__)

_POST_OPTIONS: Any = {"security": {"bearer_auth": True}}  # what create() passes: send the API key
POOL_PER_CLIENT = 8  # connections per AsyncOpenAI client of an endpoint (see Endpoint)
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
NO_KEY = "sk-no-key-required"


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, endpoint_fault: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after
        self.endpoint_fault = endpoint_fault  # the endpoint failed (not the reply): route around it for a while


class Endpoint:
    """One base URL with its own connection pool and concurrency limit."""

    def __init__(self, base_url: str, api_key: str, concurrency: int, timeout: float,
                 transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # Several clients when the limit is high: httpx2's pool scans (and probes the socket
        # of) every idle connection on each request, so one pool of thousands costs more CPU
        # per call than many small ones. The pools together hold exactly the limit. One
        # TLS context for all (each client would otherwise build its own: ~17 ms, ~0.8 MB).
        n = -(-concurrency // POOL_PER_CLIENT)
        self._sizes = [concurrency // n + (i < concurrency % n) for i in range(n)]
        tls = httpx2.create_ssl_context()
        self.clients = [self._client(api_key, size, timeout, transport, tls) for size in self._sizes]
        self.client = self.clients[0]
        self._in_flight = [0] * n  # requests in flight per client
        self._next = 0  # where the search for a client with a free connection starts
        self.limit = PeakLimiter(concurrency)
        self.outstanding = 0  # waiting for or holding the limit
        self.cool_until = 0.0  # after a timeout / connection error / HTTP error: avoided until then

    def _client(self, api_key: str, pool: int, timeout: float, transport: httpx2.AsyncBaseTransport | None,
                tls: Any) -> openai.AsyncOpenAI:
        # Size the pool to the limit: a custom client otherwise drops the SDK's pool limits.
        http_client = openai.DefaultAsyncHttpxClient(
            verify=tls,
            limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=httpx2.Timeout(timeout, connect=min(10.0, timeout)),
            **({"transport": transport} if transport is not None else {}),
        )
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, timeout=timeout, http_client=http_client
        )

    async def post(self, body: dict[str, Any]) -> ChatCompletion:
        """POST a chat completion through the next client with a free connection (call it
        holding ``limit``: then one always has a free connection; round robin spreads the load)."""
        n = len(self.clients)
        i = self._next
        for _ in range(n - 1):
            if self._in_flight[i] < self._sizes[i]:
                break
            i = (i + 1) % n
        self._next = (i + 1) % n
        self._in_flight[i] += 1
        try:
            # the SDK's own POST, without ``chat.completions.create``'s walk of every
            # message against the TypedDict params (about 0.1 ms of CPU per message:
            # the largest client cost of long conversations); same request body
            return await self.clients[i].post("/chat/completions", body=body, cast_to=ChatCompletion,
                                              options=_POST_OPTIONS)
        finally:
            self._in_flight[i] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` as
    seconds or an HTTP date); None when absent or unusable (then backoff decides)."""
    if headers is None:
        return None
    ms = _seconds(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # an HTTP date is GMT
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - time.time())


def _seconds(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


@functools.lru_cache(maxsize=256)
def schema_json(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``schema``, built once per class (pydantic rebuilds
    it on every call, about 0.1 ms). Shared: do not modify it."""
    return schema.model_json_schema()


def response_format(schema: type[BaseModel], dialect: str) -> dict[str, Any]:
    """The ``response_format`` each server family understands for a JSON schema."""
    js = schema_json(schema)
    if dialect == "llamacpp":
        return {"type": "json_object", "schema": js}
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": js}}


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
        self.endpoints = [Endpoint(u, api_key, settings.concurrency, settings.timeout, transport) for u in urls]
        self.recorder = recorder
        self.cache = cache
        self.budget = budget or RetryBudget(settings.retry_budget)
        self.rpm = TokenBucket(settings.rpm) if settings.rpm else None
        self.tpm = TokenBucket(settings.tpm) if settings.tpm else None
        self._rng = random.Random(seed)
        self.stats = {"calls": 0, "cached": 0, "retries": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
        # a server may echo the key in an error body: such text is scrubbed before it is
        # logged, recorded or raised (the key itself lives only in the SDK clients)
        self._redact = _redactor(api_key if api_key != NO_KEY else None)
        del api_key

    async def aclose(self) -> None:
        for ep in self.endpoints:
            await ep.aclose()

    @property
    def peak_in_flight(self) -> int:
        return max(ep.limit.peak for ep in self.endpoints)

    def _pick(self) -> Endpoint:
        """The endpoint with the fewest outstanding requests, among those not cooling
        down after a failure (all of them when every one is)."""
        now = time.monotonic()
        healthy = [ep for ep in self.endpoints if ep.cool_until <= now] or self.endpoints
        return min(healthy, key=lambda ep: ep.outstanding)

    def _clip(self, text: str, limit: int = 200) -> str:
        """Server or model text made fit for a reason: key scrubbed first, then shortened."""
        return _short(self._redact(str(text)), limit)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.settings.backoff_max, self.settings.backoff_base * (2 ** (attempt - 1)))
        return self._rng.uniform(0, cap)

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
        schema_js = schema_json(schema) if schema is not None else None
        key = request_key(self.model, messages, params, schema_js)
        request = {"model": self.model, "messages": messages, **params}
        if schema_js is not None:
            request["schema"] = schema_js
        self.stats["calls"] += 1

        if self.cache and self.recorder is not None:
            hit = await self.recorder.lookup(key)
            if hit is not None:
                parsed = schema.model_validate_json(hit["text"]) if schema is not None else None
                result = ChatResult(
                    text=hit["text"], parsed=parsed, prompt_tokens=hit.get("prompt_tokens", 0),
                    completion_tokens=hit.get("completion_tokens", 0), attempts=0, cached=True,
                    endpoint=hit.get("endpoint", "cache"), model=self.model,
                )
                self.stats["cached"] += 1
                await self.recorder.record(
                    CallRecord(role, "cache", self.model, context, request, result.text, result.prompt_tokens,
                               result.completion_tokens, 0.0, 0, True, None, key),
                    None,
                )
                return result

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
            except _Retryable as exc:
                reason = self._redact(exc.reason)
                if exc.endpoint_fault and len(self.endpoints) > 1:
                    cool = exc.retry_after if exc.retry_after is not None else self.settings.backoff_max
                    endpoint.cool_until = time.monotonic() + min(cool, 120.0)
                if attempt > self.settings.max_retries or not self.budget.take():
                    why = "retries exhausted" if attempt > self.settings.max_retries else "run retry budget exhausted"
                    await self._fail(role, endpoint, context, request, key, start, attempt, f"{reason} ({why})")
                    err_cls = StructuredOutputError if reason.startswith("invalid structured output") else LLMError
                    raise err_cls(role, endpoint.base_url, f"{reason} ({why})", attempt) from None
                self.stats["retries"] += 1
                if reason.startswith("invalid structured output") and max_tokens < 4 * sampling.max_tokens:
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
            latency = time.monotonic() - start
            result = ChatResult(
                text=result.text, parsed=result.parsed, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens, latency_s=latency, attempts=attempt,
                cached=False, endpoint=endpoint.base_url, model=self.model,
            )
            self.stats["prompt_tokens"] += result.prompt_tokens
            self.stats["completion_tokens"] += result.completion_tokens
            if self.recorder is not None:
                cache_value = None
                if self.cache:
                    cache_value = {"text": result.text, "prompt_tokens": result.prompt_tokens,
                                   "completion_tokens": result.completion_tokens, "endpoint": endpoint.base_url}
                await self.recorder.record(
                    CallRecord(role, endpoint.base_url, self.model, context, request, result.text,
                               result.prompt_tokens, result.completion_tokens, latency, attempt, False, None, key),
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
                           time.monotonic() - start, attempt, False, reason, key),
                None,
            )

    async def _attempt(self, ep: Endpoint, messages: list[dict[str, str]], params: dict[str, Any],
                       schema: type[BaseModel] | None, role: str) -> ChatResult:
        if self.rpm is not None:
            await self.rpm.take(1)
        estimate = sum(len(m.get("content", "")) for m in messages) / 4 + params.get("max_tokens", 0)
        if self.tpm is not None:
            await self.tpm.take(estimate)
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, **params}
        if schema is not None:
            kwargs["response_format"] = response_format(schema, self.settings.dialect)
        ep.outstanding += 1
        try:
            async with ep.limit:
                with anyio.fail_after(self.settings.timeout + 10):
                    resp = await ep.post(kwargs)
        except TimeoutError:
            raise _Retryable("timeout", endpoint_fault=True) from None
        except openai.APITimeoutError:
            raise _Retryable("timeout", endpoint_fault=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in RETRY_STATUS:
                raise _Retryable(f"HTTP {status}", _retry_after(exc.response.headers), endpoint_fault=True) from None
            raise LLMError(role, ep.base_url, f"HTTP {status}: {self._clip(exc.message)}") from None
        except openai.APIConnectionError as exc:
            raise _Retryable(f"connection error: {self._clip(str(exc.__cause__ or exc))}", endpoint_fault=True) from None
        except (json.JSONDecodeError, openai.APIResponseValidationError, ValueError) as exc:
            raise _Retryable(f"malformed response: {self._clip(str(exc))}") from None
        finally:
            ep.outstanding -= 1
        usage = getattr(resp, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        if self.tpm is not None:
            self.tpm.charge(prompt_tokens + completion_tokens - estimate)
        choices = getattr(resp, "choices", None) or []
        text = (choices[0].message.content if choices and choices[0].message else None) or ""
        if not text.strip():
            raise _Retryable("empty reply")
        parsed = None
        if schema is not None:
            try:
                # strict=False: llama.cpp's grammar lets raw newlines into strings
                parsed = schema.model_validate(json.loads(text, strict=False))
            except (json.JSONDecodeError, ValidationError) as exc:
                detail = str(exc).splitlines()[0] if isinstance(exc, json.JSONDecodeError) else _first_error(exc)
                raise _Retryable(f"invalid structured output: {self._clip(detail)}; reply was {self._clip(text, 120)!r}") from None
            text = parsed.model_dump_json()
        return ChatResult(text=text, parsed=parsed, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "reply"
    return f"{where}: {err.get('msg', 'invalid')}"


def _redactor(secret: str | None):
    """A function that replaces ``secret`` in a text with a mask."""
    if not secret:
        return lambda text: text
    return lambda text: text.replace(secret, "[redacted]")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
