"""The latency + fault-injection server of benchmarks/: replies, structured
output, every fault kind, counters, determinism. The HTTP tests run the real
server in its own process and talk to it with the real openai client."""

from __future__ import annotations

import json
import random
import time
from typing import Literal

import anyio
import httpx2
import jsonschema
import openai
import pytest
from _common import latency_server
from latency_server import (
    FAULT_KINDS,
    FakeLLM,
    ServerConfig,
    instance_for,
    parse_fault_mix,
    serve_in_thread,
    violation_for,
)
from pydantic import BaseModel, Field

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Inducer(BaseModel):
    profile: str | None = Field(description="profile so far, or null")
    personalities: str | None = Field(description="traits so far, or null")


class Judge(BaseModel):
    score: int = Field(ge=1, le=5)


class Verdict(BaseModel):
    better: str = Field(pattern="^[AB]$")


class Item(BaseModel):
    name: str = Field(min_length=3, max_length=12)
    kind: Literal["book", "film", "song"]
    weight: float = Field(gt=0, lt=1)
    tags: list[str] = Field(min_length=2, max_length=4)


class Nested(BaseModel):
    items: list[Item]
    best: Item | None
    code: str = Field(pattern=r"^\d{3}-[a-z]+$")
    count: int = Field(ge=10, le=20, multiple_of=5)
    flag: bool
    note: str = "x"


SCHEMAS = [Inducer, Judge, Verdict, Item, Nested]
INDUCER_SCHEMA = Inducer.model_json_schema()
JUDGE_SCHEMA = Judge.model_json_schema()


def _messages(text: str = "hi") -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("model", SCHEMAS, ids=lambda m: m.__name__)
def test_instances_validate_against_their_schema(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(30):
        value = instance_for(schema, random.Random(seed))
        jsonschema.validate(value, schema)
        model.model_validate(value)


def test_instances_vary_and_use_null_branches() -> None:
    scores = {instance_for(JUDGE_SCHEMA, random.Random(s))["score"] for s in range(50)}
    assert scores == {1, 2, 3, 4, 5}
    profiles = [instance_for(INDUCER_SCHEMA, random.Random(s))["profile"] for s in range(50)]
    assert None in profiles and any(isinstance(p, str) and p for p in profiles)


@pytest.mark.parametrize("model", SCHEMAS, ids=lambda m: m.__name__)
def test_violations_fail_their_schema(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    value = violation_for(schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, schema)


def test_fault_mix_and_config_are_validated() -> None:
    assert parse_fault_mix("429=2,hang") == {"429": 2.0, "hang": 1.0}
    assert set(parse_fault_mix("all")) == set(FAULT_KINDS)
    with pytest.raises(ValueError, match="unknown"):
        parse_fault_mix("418")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ServerConfig(fault_rate=1.5)
    with pytest.raises(ValueError, match="unknown config keys"):
        ServerConfig().updated({"latencyy": 1})


def _draws(seed: int, rate: float, bodies: list[bytes], mix: str = "all", structured: bool = True) -> list:
    fake = FakeLLM(ServerConfig(fault_rate=rate, fault_mix=mix, seed=seed))
    return [fake.decide(b, structured) for b in bodies]


def test_fault_draws_follow_rate_mix_and_seed() -> None:
    bodies = [f"body {i}".encode() for i in range(4000)]
    draws = _draws(3, 0.2, bodies)
    rate = sum(d is not None for d in draws) / len(draws)
    assert 0.17 < rate < 0.23
    assert {d for d in draws if d} == set(FAULT_KINDS)
    assert draws == _draws(3, 0.2, bodies)
    assert draws != _draws(4, 0.2, bodies)
    assert _draws(3, 0.0, bodies[:200]) == [None] * 200
    assert set(_draws(3, 1.0, bodies[:200], "503")) == {"503"}
    # bad_schema is only drawn for structured requests
    assert set(_draws(3, 1.0, bodies[:200], "bad_schema", structured=False)) == {None}
    assert set(_draws(3, 1.0, bodies[:200], "bad_schema,500", structured=False)) == {"500"}


def test_a_retried_body_gets_a_fresh_draw() -> None:
    fake = FakeLLM(ServerConfig(fault_rate=0.5, seed=1))
    draws = [fake.decide(b"same body", True) for _ in range(64)]
    assert None in draws and any(draws)
    again = FakeLLM(ServerConfig(fault_rate=0.5, seed=1))
    assert [again.decide(b"same body", True) for _ in range(64)] == draws


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def server():
    with latency_server(0.02, hang=300.0, retry_after=2.0) as srv:
        yield srv


@pytest.fixture
def fresh(server):
    """The module's server with faults off and counters zeroed."""
    server.configure(latency=0.02, fault_rate=0.0, fault_mix="all", seed=0, reset=True)
    return server


def _client(server, timeout: float = 10.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0, timeout=timeout)


async def test_answers_the_openai_client(fresh) -> None:
    async with _client(fresh) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["latency-server"]
        start = time.perf_counter()
        reply = await client.chat.completions.create(model="m", messages=_messages("plan my weekend"))
        assert time.perf_counter() - start >= 0.02
        text = reply.choices[0].message.content
        assert text and text.endswith((".", "?", "!"))
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        same = await client.chat.completions.create(model="m", messages=_messages("plan my weekend"))
        assert same.choices[0].message.content == text
        others = {
            (await client.chat.completions.create(model="m", messages=_messages(f"q{i}"))).choices[0].message.content
            for i in range(10)
        }
        assert len(others) > 5
        short = await client.chat.completions.create(model="m", messages=_messages(), max_tokens=2)
        assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens <= 2
    stats = fresh.stats()
    assert stats["requests"] == stats["replies"] == 13 and stats["faults_total"] == 0


@pytest.mark.parametrize("dialect", ["llamacpp", "openai", "vllm"])
@pytest.mark.parametrize("model", [Inducer, Judge, Verdict, Nested], ids=lambda m: m.__name__)
async def test_structured_replies_validate(fresh, dialect: str, model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    extra: dict = {}
    if dialect == "llamacpp":
        extra["response_format"] = {"type": "json_object", "schema": schema}
    elif dialect == "openai":
        extra["response_format"] = {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema}}
    else:
        extra["extra_body"] = {"guided_json": schema}
    async with _client(fresh) as client:
        for i in range(5):
            reply = await client.chat.completions.create(model="m", messages=_messages(f"case {i}"), **extra)
            value = json.loads(reply.choices[0].message.content)
            jsonschema.validate(value, schema)
            model.model_validate(value)


async def test_concurrent_requests_overlap(fresh) -> None:
    fresh.configure(latency=0.3)
    async with _client(fresh) as client:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(lambda i=i: client.chat.completions.create(model="m", messages=_messages(str(i))))
        elapsed = time.perf_counter() - start
    assert elapsed < 20  # 200 sequential calls would take 60 s; generous for a loaded CI machine
    stats = fresh.stats()
    assert stats["replies"] == 200 and stats["peak_in_flight"] >= 100 and stats["in_flight"] == 0


async def _one_fault(server, kind: str, timeout: float = 10.0, **extra):
    server.configure(fault_rate=1.0, fault_mix=kind, reset=True)
    async with _client(server, timeout) as client:
        return await client.chat.completions.create(model="m", messages=_messages(kind), **extra)


@pytest.mark.parametrize("kind,error", [
    ("429", openai.RateLimitError),
    ("500", openai.InternalServerError),
    ("503", openai.InternalServerError),
])
async def test_status_faults(fresh, kind: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        await _one_fault(fresh, kind)
    assert info.value.status_code == int(kind)
    assert "injected" in info.value.message
    if kind == "429":
        assert info.value.response.headers["retry-after"] == "2"
    stats = fresh.stats()
    assert stats["faults"][kind] == 1 and stats["faults_total"] == 1 and stats["replies"] == 0


async def test_hang_outlasts_the_client_timeout(fresh) -> None:
    start = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        await _one_fault(fresh, "hang", timeout=0.4)
    assert 0.4 <= time.perf_counter() - start < 5
    assert fresh.stats()["faults"]["hang"] == 1
    # the server notices the client left and frees the request
    deadline = time.monotonic() + 5
    while fresh.stats()["in_flight"] and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert fresh.stats()["in_flight"] == 0


async def test_hang_ends_after_the_configured_time(fresh) -> None:
    fresh.configure(hang=0.3)
    try:
        start = time.perf_counter()
        reply = await _one_fault(fresh, "hang", timeout=5)
        assert time.perf_counter() - start >= 0.3 and reply.choices[0].message.content
    finally:
        fresh.configure(hang=300.0)


async def test_disconnect_mid_body_is_a_connection_error(fresh) -> None:
    with pytest.raises(openai.APIConnectionError) as info:
        await _one_fault(fresh, "disconnect")
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete" in str(info.value.__cause__) or "complete message body" in str(info.value.__cause__)
    assert fresh.stats()["faults"]["disconnect"] == 1


async def test_malformed_body_cannot_be_parsed(fresh) -> None:
    fresh.configure(fault_rate=1.0, fault_mix="malformed", reset=True)
    async with httpx2.AsyncClient() as http:
        resp = await http.post(fresh.base_url + "/chat/completions", json={"model": "m", "messages": _messages()})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.content.startswith(b'{"id": "chatcmpl-')
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)
    # what the openai client does with it: raises the decode error as is
    with pytest.raises(json.JSONDecodeError):
        await _one_fault(fresh, "malformed")
    assert fresh.stats()["faults"]["malformed"] == 1  # counters were reset by _one_fault


async def test_empty_message(fresh) -> None:
    reply = await _one_fault(fresh, "empty")
    assert reply.choices[0].message.content == ""
    assert fresh.stats()["faults"]["empty"] == 1


async def test_bad_schema_reply_does_not_match(fresh) -> None:
    fmt = {"type": "json_object", "schema": JUDGE_SCHEMA}
    reply = await _one_fault(fresh, "bad_schema", response_format=fmt)
    value = json.loads(reply.choices[0].message.content)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, JUDGE_SCHEMA)
    # a plain request is never given a schema fault
    plain = await _one_fault(fresh, "bad_schema")
    assert plain.choices[0].message.content
    stats = fresh.stats()
    assert stats["faults"]["bad_schema"] == 0 and stats["replies"] == 1  # reset by the second _one_fault


async def test_stats_count_every_request(fresh) -> None:
    fresh.configure(fault_rate=0.5, fault_mix="429,500,503,empty,malformed", latency=0.0, reset=True)
    outcomes = {"ok": 0, "error": 0}
    async with _client(fresh) as client:
        for i in range(60):
            try:
                reply = await client.chat.completions.create(model="m", messages=_messages(f"n{i}"))
                outcomes["ok" if reply.choices[0].message.content else "error"] += 1
            except (openai.APIError, json.JSONDecodeError):
                outcomes["error"] += 1
    stats = fresh.stats(log=True)
    assert stats["requests"] == 60 and stats["replies"] + stats["faults_total"] == 60
    assert stats["replies"] == outcomes["ok"] and stats["faults_total"] == outcomes["error"]
    assert 15 <= stats["faults_total"] <= 45
    assert len(stats["log"]) == 60
    assert sum(1 for _, _, kind in stats["log"] if kind) == stats["faults_total"]


async def test_config_endpoint_rejects_unknown_keys(fresh) -> None:
    with pytest.raises(ValueError, match="unknown config keys"):
        fresh.configure(fault_rat=1.0)
    with pytest.raises(ValueError, match="unknown"):
        fresh.configure(fault_mix="teapot")
    assert fresh.stats()["config"]["fault_rate"] == 0.0


async def test_bad_requests_are_400(fresh) -> None:
    async with httpx2.AsyncClient() as http:
        resp = await http.post(fresh.base_url + "/chat/completions", content=b"{not json")
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
        resp = await http.post(fresh.base_url + "/chat/completions", json={"model": "m"})
        assert resp.status_code == 400
        resp = await http.post(fresh.base_url + "/chat/completions", json={"messages": ["hi"]})
        assert resp.status_code == 400
        resp = await http.post(fresh.base_url + "/chat/completions", json={"messages": _messages(), "n": 10**6})
        assert resp.status_code == 400 and "'n'" in resp.json()["error"]["message"]
        resp = await http.post(fresh.base_url + "/chat/completions", json={"messages": _messages(), "max_tokens": "x"})
        assert resp.status_code == 400
        resp = await http.post(fresh.base_url + "/chat/completions", json={"messages": _messages(), "stream": True})
        assert resp.status_code == 400
        resp = await http.get(fresh.url + "/health")
        assert resp.json() == {"status": "ok"}
    assert fresh.stats()["bad_requests"] == 6 and fresh.stats()["requests"] == 0


def _fault_sequence(seed: int) -> list:
    args = ("--fault-mix", "429,500,503,empty,malformed,bad_schema")
    with latency_server(0.0, fault_rate=0.5, seed=seed, extra_args=args) as srv:
        with httpx2.Client() as http:
            for i in range(40):
                body = {"model": "m", "messages": _messages(f"seq {i % 25}")}  # repeats get fresh draws
                if i % 3 == 0:
                    body["response_format"] = {"type": "json_object", "schema": INDUCER_SCHEMA}
                http.post(srv.base_url + "/chat/completions", json=body)
        return [kind for _, _, kind in srv.stats(log=True)["log"]]


def test_seeded_runs_inject_the_same_sequence() -> None:
    first = _fault_sequence(7)
    assert len(first) == 40 and 8 <= sum(k is not None for k in first) <= 32
    assert _fault_sequence(7) == first
    assert _fault_sequence(8) != first


async def test_serve_in_thread() -> None:
    with serve_in_thread(ServerConfig(latency=0.0, fault_rate=1.0, fault_mix="503")) as url:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=_messages())
