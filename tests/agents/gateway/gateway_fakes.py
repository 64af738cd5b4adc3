"""A fake OpenAI-compatible server at the HTTP seam: an ``httpx2.MockTransport``
handed to ``Backend(..., transport=...)``. It records every request (URL,
headers, JSON body, arrival time), tracks how many are inside it at once,
and answers from a script: a reply text, an ``httpx2.Response``, an
exception to raise (timeouts, connection errors), or a function of the
request returning one of those."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2

from aloesim.agents.gateway import Backend, BackendSettings

URL = "http://fake.test/v1"


def completion(text: str, prompt_tokens: int = 7, completion_tokens: int = 3) -> httpx2.Response:
    """A well-formed chat.completion reply."""
    return httpx2.Response(200, json={
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def status(code: int, headers: dict[str, str] | None = None, message: str = "fake failure") -> httpx2.Response:
    return httpx2.Response(code, headers=headers or {}, json={"error": {"message": message, "type": "fake"}})


@dataclass
class Seen:
    url: str
    host: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


Reply = str | httpx2.Response | BaseException | Callable[[Seen], Any]


@dataclass
class FakeServer:
    """Answers with ``script`` in order, then with ``default`` forever."""

    script: Iterable[Reply] = ()
    default: Reply = "ok"
    delay: dict[str, float] = field(default_factory=dict)  # host -> seconds to wait before answering
    gate: anyio.Event | None = None  # when set, every request waits here until the event is set

    def __post_init__(self) -> None:
        self._script = deque(self.script)
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak = 0

    @property
    def count(self) -> int:
        return len(self.seen)

    @property
    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        seen = Seen(str(request.url), request.url.host, dict(request.headers), json.loads(request.content or b"{}"),
                    time.monotonic())
        self.seen.append(seen)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay.get(seen.host):
                await anyio.sleep(self.delay[seen.host])
            reply = self._script.popleft() if self._script else self.default
            if callable(reply) and not isinstance(reply, (httpx2.Response, BaseException)):
                reply = reply(seen)
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(reply, str):
                return completion(reply)
            return reply
        finally:
            self.in_flight -= 1


def make_backend(server: FakeServer, urls: list[str] | None = None, **settings: Any) -> Backend:
    """A Backend over the fake server with fast backoff (tests stay quick)."""
    opts: dict[str, Any] = {"kind": "openai", "model": "fake-model", "base_url": URL, "backoff_base": 0.001,
                            "backoff_max": 0.01, "concurrency": 4}
    backend_kw = {k: settings.pop(k) for k in ("recorder", "cache", "budget", "seed", "name", "guards") if k in settings}
    opts.update(settings)
    return Backend(BackendSettings(**opts), urls or [URL], transport=server.transport, **backend_kw)
