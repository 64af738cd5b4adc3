"""One OpenAI-compatible endpoint: its connection pools, its concurrency
limit (fixed, or adaptive: ``AdaptiveLimiter``), and the raw POST of a chat completion.

Redirects are never followed: a 3xx comes back as a status error (the
gateway records it, naming the endpoint and the status) so a prompt is never
re-sent, or turned into a GET, towards another origin. The body is returned
as raw bytes for ``parse_reply``; the SDK's own response model is not used.

An endpoint served by a process aloesim manages has a ``guard`` (see
``EndpointGuard``): the gateway waits on it while the server restarts and
tells it when a call could not connect or timed out.
"""

from __future__ import annotations

import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import httpx2
import openai

from ._adaptive import AdaptiveLimiter
from ._limits import PeakLimiter

__all__ = ["NO_KEY", "POOL_PER_CLIENT", "Endpoint", "EndpointGuard", "redirect_origin"]

_POST_OPTIONS: Any = {"security": {"bearer_auth": True}}  # what create() passes: send the API key
POOL_PER_CLIENT = 8  # connections per AsyncOpenAI client of an endpoint (see Endpoint)
NO_KEY = "sk-no-key-required"


def redirect_origin(url: str | None) -> str:
    """scheme://host[:port] of a redirect target (never its path or query)."""
    if not url:
        return "nowhere"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an unreadable location"
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "a relative location"


class EndpointGuard(Protocol):
    """The watch over a managed server behind an endpoint."""

    async def usable(self) -> None:
        """Return when the server can take a request (at once, or after a restart);
        raise ``ServerError`` when it is gone for good."""
        ...

    def trouble(self) -> None:
        """A call could not connect or timed out: check the server now."""
        ...


class Endpoint:
    """One base URL with its own connection pool and concurrency limit."""

    def __init__(self, base_url: str, api_key: str, concurrency: int, timeout: float,
                 transport: httpx2.AsyncBaseTransport | None = None, guard: EndpointGuard | None = None,
                 min_concurrency: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.guard = guard
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
        # adaptive (min_concurrency given): the limit moves within [min_concurrency, concurrency]
        self.adaptive = AdaptiveLimiter(concurrency, min_concurrency) if min_concurrency is not None else None
        self.limit: PeakLimiter | AdaptiveLimiter = self.adaptive or PeakLimiter(concurrency)
        self.outstanding = 0  # waiting for or holding the limit
        self.cool_until = 0.0  # after a timeout / connection error / HTTP error: avoided until then

    def _client(self, api_key: str, pool: int, timeout: float, transport: httpx2.AsyncBaseTransport | None,
                tls: Any) -> openai.AsyncOpenAI:
        # Size the pool to the limit: a custom client otherwise drops the SDK's pool limits.
        http_client = openai.DefaultAsyncHttpxClient(
            verify=tls,
            limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=httpx2.Timeout(timeout, connect=min(10.0, timeout)),
            follow_redirects=False,  # the SDK's default client follows them
            **({"transport": transport} if transport is not None else {}),
        )
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, timeout=timeout, http_client=http_client
        )

    async def post(self, body: dict[str, Any], *, deadline: float) -> httpx2.Response:
        """POST a chat completion (call it holding ``limit``), given up after ``deadline``
        seconds (``TimeoutError``). Returns the response with its body read; a non-2xx
        status raises the SDK's ``APIStatusError``. An adaptive limit learns from it:
        the latency and rate-limit headers of an answer; a refusal (429, 503, a timeout)
        cuts the limit, and this call keeps its place for the hold the limiter names."""
        sent = time.monotonic()
        try:
            with anyio.fail_after(deadline):
                resp = await self._send(body)
        except (TimeoutError, openai.APITimeoutError, openai.APIStatusError) as exc:
            if self.adaptive is not None and (not isinstance(exc, openai.APIStatusError)
                                              or exc.status_code in (429, 503)):
                headers = getattr(getattr(exc, "response", None), "headers", None)
                await anyio.sleep(self.adaptive.refused(headers, sent_at=sent))
            raise
        if self.adaptive is not None:
            self.adaptive.answered(time.monotonic() - sent, resp.headers)
        return resp

    async def _send(self, body: dict[str, Any]) -> httpx2.Response:
        """The POST through the next client with a free connection (holding ``limit``, one
        always has a free connection; round robin spreads the load)."""
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
            # the largest client cost of long conversations); same request body. The
            # raw response: parse_reply reads it, not the SDK's model.
            return await self.clients[i].post("/chat/completions", body=body, cast_to=httpx2.Response,
                                              options={**_POST_OPTIONS, "follow_redirects": False})
        finally:
            self._in_flight[i] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()
