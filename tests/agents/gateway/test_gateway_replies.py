"""Replies read defensively in one place (``parse_reply``), redirects never
followed, finish reasons recorded, long replies capped, key echoes redacted,
logprobs carried, and a managed server's guard consulted: the gateway at the
HTTP seam (``httpx2.MockTransport``), with the hostile reply kinds of
``benchmarks/hostile_replies.py`` and a real SQLite file for the records."""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import httpx2
import pytest
from gateway_fakes import URL, FakeServer, completion, make_backend, status
from hostile_replies import HOSTILE_KINDS, fuzz_reply, hostile_reply
from pydantic import BaseModel

from aloesim.agents.gateway import MalformedReply, Sampling, StoreRecorder, parse_reply
from aloesim.agents.gateway._faults import redactor
from aloesim.core import MAX_COUNT
from aloesim.core.errors import LLMError, ServerError, StructuredOutputError
from aloesim.environment.store import Store, connect

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "hello"}]
GOOD = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Fine."}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


class Tag(BaseModel):
    tag: str


def raw(kind: str, structured: bool = False) -> bytes:
    good = dict(GOOD, choices=[dict(GOOD["choices"][0], message={"role": "assistant",
                                                                  "content": '{"tag": "t"}' if structured else "Fine."})])
    return hostile_reply(kind, good, random.Random(0), structured=structured, api_key="sk-test-key-0123456789")[2]


# -- parse_reply: every hostile shape, one verdict each -------------------------------------------------------

@pytest.mark.parametrize("kind", [k for k, v in HOSTILE_KINDS.items() if v == "accept"])
def test_usable_replies_are_made_safe(kind: str) -> None:
    reply = parse_reply(raw(kind), max_chars=100_000)
    reply.text.encode("utf-8")  # valid UTF-8 from here on
    assert reply.text.startswith("Fine")
    assert 0 <= reply.prompt_tokens <= MAX_COUNT and 0 <= reply.completion_tokens <= MAX_COUNT
    if kind == "surrogate":
        assert reply.text.endswith("\ufffd")
    if kind == "usage_huge":
        assert (reply.prompt_tokens, reply.completion_tokens) == (MAX_COUNT, MAX_COUNT)
    if kind == "usage_garbage":
        assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)
    if kind in ("length", "huge"):
        assert reply.finish_reason == "length"
    if kind == "huge":
        assert len(reply.text) == 100_000 and reply.cut_chars > 1_900_000


@pytest.mark.parametrize("kind", [k for k, v in HOSTILE_KINDS.items() if v == "retry"])
def test_replies_with_no_usable_answer_are_malformed(kind: str) -> None:
    with pytest.raises(MalformedReply) as info:
        parse_reply(raw(kind))
    assert "\n" not in info.value.reason and len(info.value.reason) < 200


def test_fuzzed_bodies_give_a_reply_or_malformed_never_anything_else() -> None:
    rng = random.Random(42)
    verdicts = {"reply": 0, "malformed": 0}
    for _ in range(500):
        _, _, body = fuzz_reply(GOOD, rng)
        try:
            reply = parse_reply(body, max_chars=20_000)
        except MalformedReply:
            verdicts["malformed"] += 1
            continue
        verdicts["reply"] += 1
        json.dumps([reply.text, reply.finish_reason, reply.logprobs], allow_nan=False).encode("utf-8")
        assert len(reply.text) <= 20_000 and 0 <= reply.prompt_tokens <= MAX_COUNT
    assert verdicts["reply"] > 50 and verdicts["malformed"] > 100, verdicts


def test_logprobs_are_carried_as_plain_data() -> None:
    lp = {"content": [{"token": "4", "logprob": -0.1, "top_logprobs": [{"token": "5", "logprob": float("-inf")}]}]}
    body = json.dumps(dict(GOOD, choices=[dict(GOOD["choices"][0], logprobs=lp)])).encode()
    reply = parse_reply(body)
    assert reply.logprobs["content"][0]["token"] == "4"
    assert reply.logprobs["content"][0]["top_logprobs"][0]["logprob"] is None  # -Infinity is not JSON
    assert parse_reply(json.dumps(GOOD).encode()).logprobs is None


# -- the backend -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_not_retried(tmp_path: Path, code: int) -> None:
    server = FakeServer(default=lambda seen: httpx2.Response(code, headers={"location": "http://evil.test/steal?k=1"}))
    async with Store.open(tmp_path / "r.db") as store:
        backend = make_backend(server, recorder=StoreRecorder(store), max_retries=3)
        with pytest.raises(LLMError) as info:
            await backend.chat(MSGS, role="user")
        await backend.aclose()
    assert [s.host for s in server.seen] == ["fake.test"]  # one request, to the endpoint only
    assert info.value.attempts == 1 and info.value.endpoint == URL
    assert info.value.reason == (f"HTTP {code} redirect to http://evil.test not followed"
                                 " (a model call never leaves its endpoint)")
    (row,) = connect(tmp_path / "r.db", readonly=True).execute("SELECT endpoint, error, attempts FROM llm_calls")
    assert tuple(row) == (URL, info.value.reason, 1)


async def test_finish_reasons_are_recorded_and_replayed_from_the_cache(tmp_path: Path) -> None:
    def cut(seen):
        body = json.loads(completion("cut short").content)
        body["choices"][0]["finish_reason"] = "length"
        return httpx2.Response(200, json=body)

    server = FakeServer([completion("whole"), cut])
    db = tmp_path / "f.db"
    async with Store.open(db) as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        a = await backend.chat(MSGS, role="user")
        b = await backend.chat([{"role": "user", "content": "other"}], role="user")
        again = await backend.chat([{"role": "user", "content": "other"}], role="user")  # a cache hit
        await backend.aclose()
    assert (a.finish_reason, b.finish_reason, again.finish_reason, again.cached) == ("stop", "length", "length", True)
    rows = connect(db, readonly=True).execute("SELECT finish_reason, cached FROM llm_calls ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("stop", 0), ("length", 0), ("length", 1)]


async def test_structured_output_cut_at_max_tokens_is_retried_with_more_room() -> None:
    def cut(seen):
        body = json.loads(completion('{"tag": "t"}').content)
        body["choices"][0]["finish_reason"] = "length"
        return httpx2.Response(200, json=body)

    server = FakeServer([cut, cut, '{"tag": "whole"}'])
    backend = make_backend(server, max_retries=3)
    result = await backend.chat(MSGS, role="inducer", schema=Tag, sampling=Sampling(max_tokens=50))
    await backend.aclose()
    assert result.parsed == Tag(tag="whole") and result.attempts == 3
    assert [s.body["max_tokens"] for s in server.seen] == [50, 100, 200]
    server = FakeServer(default=cut)
    backend = make_backend(server, max_retries=1)
    with pytest.raises(StructuredOutputError, match="cut off at max_tokens=.*finish_reason=length"):
        await backend.chat(MSGS, role="inducer", schema=Tag)
    await backend.aclose()


async def test_an_escaped_lone_surrogate_inside_structured_output_is_made_safe() -> None:
    server = FakeServer(['{"tag": "cut \\ud83d"}'])
    backend = make_backend(server)
    result = await backend.chat(MSGS, role="inducer", schema=Tag)
    await backend.aclose()
    assert result.parsed == Tag(tag="cut \ufffd")
    result.text.encode("utf-8")


async def test_a_long_reply_is_capped_at_max_reply_chars() -> None:
    server = FakeServer([completion("x" * 50_000)])
    backend = make_backend(server, max_reply_chars=1000)
    result = await backend.chat(MSGS, role="user")
    await backend.aclose()
    assert len(result.text) == 1000 and result.finish_reason == "length"


async def test_masked_echoes_of_the_key_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-proj-Zq81xVbT0aLmW3"
    monkeypatch.setenv("ALOE_TEST_MASKED_KEY", key)
    message = f"Incorrect API key provided: {key[:8]}{'*' * 20}{key[-4:]}. Ends in ...{key[-6:]}; {key[4:14]}"
    server = FakeServer(default=status(401, message=message))
    backend = make_backend(server, api_key_env="ALOE_TEST_MASKED_KEY")
    with pytest.raises(LLMError) as info:
        await backend.chat(MSGS, role="user")
    await backend.aclose()
    text = str(info.value)
    assert "HTTP 401" in text and text.count("[redacted]") == 3, text
    for fragment in (key[:8], key[-4:], key[-6:], key[4:14], "****"):
        assert fragment not in text, fragment


@pytest.mark.parametrize(("text", "expected"), [
    ("sk-abcd******wxyz", "[redacted]"),
    ("key: sk-ab... end", "key: [redacted] end"),        # a prefix of 3+ chars before a mask
    ("****************wxyz", "[redacted]"),             # the last 4 after a mask
    ("a b ... c", "a b ... c"),                          # an ordinary ellipsis stays
    ("contains 0123456789ab inside", "contains [redacted] inside"),  # 8+ chars of the key in a row
    ("xxxx yyyy", "xxxx yyyy"),
])
def test_redactor_catches_recognisable_fragments(text: str, expected: str) -> None:
    secret = "sk-abcd0123456789abyz12wxyz"
    assert redactor(secret)(text) == expected


class FakeGuard:
    def __init__(self, error: ServerError | None = None) -> None:
        self.error, self.troubles, self.up = error, 0, anyio.Event()
        self.up.set()

    async def usable(self) -> None:
        await self.up.wait()
        if self.error is not None:
            raise self.error

    def trouble(self) -> None:
        self.troubles += 1


async def test_a_restarting_server_is_waited_for_and_a_dead_one_stops_the_call(tmp_path: Path) -> None:
    guard = FakeGuard()
    server = FakeServer([httpx2.ConnectError("refused"), "after the restart"])
    backend = make_backend(server, guards={URL: guard}, max_retries=2)
    guard.up = anyio.Event()  # restarting
    async with anyio.create_task_group() as tg:
        results = []

        async def call() -> None:
            results.append(await backend.chat(MSGS, role="user"))

        tg.start_soon(call)
        await anyio.sleep(0.2)
        assert server.count == 0  # nothing is sent while the server restarts
        guard.up.set()
    assert results[0].text == "after the restart" and guard.troubles == 1
    # gone for good: a ServerError (not an LLMError), recorded against the call
    db = tmp_path / "g.db"
    guard.error = ServerError("llama.cpp server on 127.0.0.1:9", "exited with code -9; not restarted")
    async with Store.open(db) as store:
        backend = make_backend(FakeServer(), guards={URL: guard}, recorder=StoreRecorder(store))
        with pytest.raises(ServerError):
            await backend.chat([{"role": "user", "content": "late"}], role="user")
        await backend.aclose()
    (error,) = connect(db, readonly=True).execute("SELECT error FROM llm_calls").fetchone()
    assert error.startswith("server error: llama.cpp server on 127.0.0.1:9: exited with code -9")
