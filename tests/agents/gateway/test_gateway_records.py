"""What the gateway remembers, on a real SQLite file: every call in
``llm_calls``, replies in ``llm_cache`` (a repeat never reaches the server,
``cache=False`` bypasses, different params are different requests), and
API keys nowhere: not in logs, rows, files or error messages."""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from pathlib import Path

import httpx2
import pytest
import structlog
from gateway_fakes import URL, FakeServer, completion, make_backend, status
from pydantic import BaseModel

from aloesim.agents.gateway import Backend, BackendSettings, CallContext, Sampling, StoreRecorder
from aloesim.core.errors import ConfigError, LLMError
from aloesim.environment.store import Store, connect

pytestmark = pytest.mark.anyio

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


class Tag(BaseModel):
    tag: str


def rows(path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    conn = connect(path, readonly=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def test_every_call_is_recorded(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    server = FakeServer([completion("first", 11, 5), status(503), completion("second", 12, 6), status(400)])
    ctx = CallContext(run_id=None, tree_id=7, turn=2, branch="p", case_id=None)
    async with Store.open(db) as store:
        backend = make_backend(server, recorder=StoreRecorder(store, run_id=None))
        sampling = Sampling(temperature=0.3, max_tokens=40, top_p=0.9, seed=5)
        r1 = await backend.chat(MSGS, role="inducer", sampling=sampling, context=ctx)
        r2 = await backend.chat([{"role": "user", "content": "again"}], role="preferred",
                                context=CallContext(case_id=3))
        with pytest.raises(LLMError):
            await backend.chat([{"role": "user", "content": "fail"}], role="judge")
        await backend.aclose()
    calls = rows(db, "SELECT * FROM llm_calls ORDER BY id")
    assert len(calls) == 3
    c1, c2, c3 = calls
    assert (c1["role"], c1["endpoint"], c1["model"]) == ("inducer", URL, "fake-model")
    assert (c1["tree_id"], c1["turn"], c1["branch"], c1["case_id"]) == (7, 2, "p", None)
    assert json.loads(c1["request"]) == {"model": "fake-model", "messages": MSGS, "temperature": 0.3,
                                         "max_tokens": 40, "top_p": 0.9, "seed": 5}
    assert (c1["response"], c1["prompt_tokens"], c1["completion_tokens"]) == ("first", 11, 5)
    assert c1["attempts"] == 1 and c1["cached"] == 0 and c1["error"] is None
    assert c1["latency_s"] == pytest.approx(r1.latency_s) and c1["latency_s"] > 0
    assert c1["cache_key"] and c1["created_at"] > 0
    assert (c2["role"], c2["case_id"], c2["response"], c2["attempts"]) == ("preferred", 3, "second", 2)
    assert c2["latency_s"] == pytest.approx(r2.latency_s)
    assert c3["role"] == "judge" and c3["response"] is None and "HTTP 400" in c3["error"]
    assert c3["attempts"] == 1 and c3["prompt_tokens"] == 0
    # the failure is not cached; the two replies are
    assert rows(db, "SELECT COUNT(*) FROM llm_cache")[0][0] == 2


async def test_second_identical_request_does_not_reach_the_server(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    server = FakeServer(default=lambda seen: completion(f"reply {len(server.seen)}"))
    sampling = Sampling(temperature=0.7, max_tokens=32, seed=1)
    async with Store.open(db) as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        first = await backend.chat(MSGS, role="user", sampling=sampling)
        second = await backend.chat(MSGS, role="user", sampling=sampling)  # right away: not yet committed
        assert server.count == 1
        assert second.text == first.text == "reply 1"
        assert second.cached and not first.cached
        assert (second.prompt_tokens, second.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
        await backend.aclose()
    calls = rows(db, "SELECT endpoint, cached, response, attempts FROM llm_calls ORDER BY id")
    assert [tuple(c) for c in calls] == [(URL, 0, "reply 1", 1), ("cache", 1, "reply 1", 0)]


async def test_cache_replays_across_runs(tmp_path: Path) -> None:
    db = tmp_path / "rerun.db"
    server = FakeServer(["original"])
    async with Store.open(db) as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        await backend.chat(MSGS, role="user", schema=None)
        await backend.aclose()
    async with Store.open(db) as store:  # a re-run: new store, new backend
        backend = make_backend(server, recorder=StoreRecorder(store))
        replay = await backend.chat(MSGS, role="user")
        await backend.aclose()
    assert server.count == 1 and replay.cached and replay.text == "original"


async def test_structured_reply_is_cached_parsed(tmp_path: Path) -> None:
    server = FakeServer(['{"tag": "x"}'])
    async with Store.open(tmp_path / "s.db") as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        await backend.chat(MSGS, role="judge", schema=Tag)
        again = await backend.chat(MSGS, role="judge", schema=Tag)
        await backend.aclose()
    assert server.count == 1 and again.cached and again.parsed == Tag(tag="x")


async def test_cache_false_bypasses(tmp_path: Path) -> None:
    db = tmp_path / "nocache.db"
    server = FakeServer()
    async with Store.open(db) as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        await backend.chat(MSGS, role="user")
        uncached = make_backend(server, recorder=StoreRecorder(store), cache=False)
        r1 = await uncached.chat(MSGS, role="user")
        r2 = await uncached.chat(MSGS, role="user")
        await backend.aclose()
        await uncached.aclose()
    assert server.count == 3 and not r1.cached and not r2.cached
    assert [r[0] for r in rows(db, "SELECT cached FROM llm_calls")] == [0, 0, 0]


@pytest.mark.parametrize("changed", [
    {"sampling": Sampling(seed=2)},
    {"sampling": Sampling(seed=1, temperature=0.2)},
    {"sampling": Sampling(seed=1, max_tokens=99)},
    {"sampling": Sampling(seed=1, top_p=0.5)},
    {"schema": Tag},
    {"messages": [{"role": "user", "content": "hello!"}]},
], ids=["seed", "temperature", "max_tokens", "top_p", "schema", "messages"])
async def test_different_requests_are_different_cache_keys(tmp_path: Path, changed: dict) -> None:
    server = FakeServer(default='{"tag": "t"}')
    async with Store.open(tmp_path / "keys.db") as store:
        backend = make_backend(server, recorder=StoreRecorder(store))
        await backend.chat(MSGS, role="user", sampling=Sampling(seed=1))
        kwargs = {"messages": MSGS, "sampling": Sampling(seed=1), **changed}
        result = await backend.chat(kwargs.pop("messages"), role="user", **kwargs)
        await backend.aclose()
    assert server.count == 2 and not result.cached


async def test_different_model_is_a_different_cache_key(tmp_path: Path) -> None:
    server = FakeServer()
    async with Store.open(tmp_path / "models.db") as store:
        a = make_backend(server, recorder=StoreRecorder(store), model="model-a")
        b = make_backend(server, recorder=StoreRecorder(store), model="model-b")
        await a.chat(MSGS, role="user")
        result = await b.chat(MSGS, role="user")
        await a.aclose()
        await b.aclose()
    assert server.count == 2 and not result.cached


SECRET_ENV = "ALOE_TEST_SECRET_KEY"


async def test_api_key_is_sent_but_never_logged_stored_or_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_ENV, key)
    caplog.set_level(logging.DEBUG)  # root and every library logger (openai, httpx2) at DEBUG
    for name in ("openai", "httpx2", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    db = tmp_path / "secret.db"
    server = FakeServer([
        "ok",                                               # a success
        lambda seen: status(401, message=f"Incorrect API key provided: {seen.headers['authorization'][7:]}"),
        lambda seen: status(503, message=f"overloaded ({seen.headers['authorization']})"),  # echoes the key
        httpx2.ConnectError("refused"),                     # retried, then exhausted
        '{"nope": 1}', '{"nope": 2}',                       # never valid structured output
    ])
    errors: list[BaseException] = []
    with structlog.testing.capture_logs() as captured:
        async with Store.open(db) as store:
            backend = make_backend(server, recorder=StoreRecorder(store), api_key_env=SECRET_ENV, max_retries=1)
            await backend.chat(MSGS, role="user")
            for kwargs in ({}, {}, {"schema": Tag}):
                try:
                    await backend.chat([{"role": "user", "content": str(len(errors))}], role="user", **kwargs)
                except LLMError as exc:
                    errors.append(exc)
            await backend.aclose()
    assert len(errors) == 3 and server.count == 6
    assert all(s.headers["authorization"] == f"Bearer {key}" for s in server.seen)

    assert captured, "the gateway logged nothing to check"
    assert key not in repr(captured)
    assert any(r.name.startswith("openai") for r in caplog.records), "the SDK's debug logs were not captured"
    assert key not in caplog.text and all(key not in repr(r.__dict__) for r in caplog.records)
    for err in errors:
        assert key not in str(err) and key not in repr(err) and key not in repr(err.__dict__)
    conn = sqlite3.connect(db)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    dumped = 0
    for table in tables:
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            assert key not in repr(row), table
            dumped += 1
    conn.close()
    assert dumped >= 4
    for f in tmp_path.iterdir():  # the database file and anything beside it (WAL, SHM)
        assert key.encode() not in f.read_bytes(), f.name


def test_missing_api_key_variable_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALOE_TEST_UNSET_KEY", raising=False)
    settings = BackendSettings(kind="openai", base_url=URL, api_key_env="ALOE_TEST_UNSET_KEY")
    with pytest.raises(ConfigError) as info:
        Backend(settings, [URL])
    assert info.value.key == "backend.api_key_env" and info.value.value == "ALOE_TEST_UNSET_KEY"
    assert "\n" not in str(info.value)


def test_no_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Backend(BackendSettings(), [])
