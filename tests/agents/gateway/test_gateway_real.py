"""The gateway against the real embedded llama.cpp server (SmolLM2-135M):
a chat completion, a structured-output request in the llamacpp dialect
validated into ``InducerOutput``, and a cached re-run that never reaches the
server. Requests pass through a counting wrapper around httpx2's real
transport."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from aloesim.agents import InducerOutput
from aloesim.agents.gateway import Backend, BackendSettings, CallContext, Sampling, StoreRecorder
from aloesim.environment.store import Store, connect

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class CountingTransport(httpx2.AsyncBaseTransport):
    """httpx2's real transport, counting the requests that go out."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def real_backend(url: str, store: Store, transport: CountingTransport) -> Backend:
    settings = BackendSettings(kind="embedded", model="SmolLM2-135M-Instruct", base_url=url, dialect="llamacpp",
                               concurrency=1, timeout=120, max_retries=3)
    return Backend(settings, [url], recorder=StoreRecorder(store), transport=transport, seed=0)


CHAT = [{"role": "user", "content": "Say hello in three words."}]
INDUCE = [
    {"role": "system", "content": "Extract what the user revealed about themselves. Reply in JSON with the keys"
                                  " profile and personalities (null when nothing was revealed)."},
    {"role": "user", "content": "I'm a retired ferry captain and I grow tomatoes on my roof. I get straight to the point."},
]


async def test_real_server_chat_structured_and_cache(embedded_url: str, tmp_path: Path) -> None:
    db = tmp_path / "real.db"
    transport = CountingTransport()
    async with Store.open(db) as store:
        backend = real_backend(embedded_url, store, transport)
        chat = await backend.chat(CHAT, role="user", sampling=Sampling(temperature=0.0, max_tokens=16, seed=1),
                                  context=CallContext(tree_id=1, turn=1, branch=""))
        assert chat.text.strip() and not chat.cached
        assert chat.prompt_tokens > 0 and 0 < chat.completion_tokens <= 16
        assert chat.endpoint == embedded_url and chat.latency_s > 0

        induced = await backend.chat(INDUCE, role="inducer", schema=InducerOutput,
                                     sampling=Sampling(temperature=0.0, max_tokens=160, seed=1))
        assert isinstance(induced.parsed, InducerOutput)
        assert json.loads(induced.text).keys() == {"profile", "personalities"}
        sent = len(transport.paths)
        assert sent >= 2 and set(transport.paths) == {"/v1/chat/completions"}

        again = await backend.chat(CHAT, role="user", sampling=Sampling(temperature=0.0, max_tokens=16, seed=1))
        induced_again = await backend.chat(INDUCE, role="inducer", schema=InducerOutput,
                                           sampling=Sampling(temperature=0.0, max_tokens=160, seed=1))
        assert len(transport.paths) == sent  # neither repeat reached the server
        assert again.cached and again.text == chat.text
        assert induced_again.cached and induced_again.parsed == induced.parsed
        await backend.aclose()

    async with Store.open(db) as store:  # a re-run with a fresh backend replays from the database
        rerun_transport = CountingTransport()
        backend = real_backend(embedded_url, store, rerun_transport)
        replay = await backend.chat(CHAT, role="user", sampling=Sampling(temperature=0.0, max_tokens=16, seed=1))
        await backend.aclose()
    assert replay.cached and replay.text == chat.text and rerun_transport.paths == []

    conn = connect(db, readonly=True)
    calls = conn.execute("SELECT role, endpoint, cached, response, error, prompt_tokens FROM llm_calls ORDER BY id").fetchall()
    conn.close()
    assert [(c["role"], c["cached"]) for c in calls] == [("user", 0), ("inducer", 0), ("user", 1), ("inducer", 1),
                                                          ("user", 1)]
    assert calls[0]["endpoint"] == embedded_url and calls[0]["response"] == chat.text and calls[0]["error"] is None
    assert InducerOutput.model_validate_json(calls[1]["response"]) == induced.parsed
