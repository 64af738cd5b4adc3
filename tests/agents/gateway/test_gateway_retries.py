"""Retries at the HTTP seam: Retry-After, which statuses are retried, timeouts,
connection errors, exhausted retries, the run-wide retry budget, and the
typed error every final failure becomes."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from gateway_fakes import URL, FakeServer, completion, make_backend, status

from aloesim.agents.gateway import RetryBudget, Sampling
from aloesim.core.errors import LLMError

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "hello"}]


async def test_429_retry_after_seconds_is_honoured() -> None:
    server = FakeServer([status(429, {"retry-after": "1"}), "fine"])
    backend = make_backend(server)  # backoff alone would wait at most 0.01 s
    result = await backend.chat(HELLO, role="inducer")
    await backend.aclose()
    assert result.text == "fine" and result.attempts == 2
    waited = server.seen[1].at - server.seen[0].at
    assert waited >= 1.0 - 1e-3, waited


async def test_429_retry_after_ms_is_honoured() -> None:
    server = FakeServer([status(429, {"retry-after-ms": "400"}), "fine"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="inducer")
    await backend.aclose()
    assert result.attempts == 2
    waited = server.seen[1].at - server.seen[0].at
    assert waited >= 0.4 - 1e-3, waited


async def test_retry_after_on_503_is_honoured_too() -> None:
    server = FakeServer([status(503, {"retry-after": "0.3"}), "fine"])
    backend = make_backend(server)
    await backend.chat(HELLO, role="inducer")
    await backend.aclose()
    assert server.seen[1].at - server.seen[0].at >= 0.3 - 1e-3


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408, 409, 429])
async def test_transient_statuses_are_retried(code: int) -> None:
    server = FakeServer([status(code), status(code), "recovered"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="preferred")
    await backend.aclose()
    assert result.text == "recovered"
    assert result.attempts == 3 and server.count == 3
    assert backend.stats["retries"] == 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(code: int) -> None:
    server = FakeServer([status(code, message="the server says no")])
    backend = make_backend(server)
    with pytest.raises(LLMError) as info:
        await backend.chat(HELLO, role="rejected")
    await backend.aclose()
    err = info.value
    assert server.count == 1
    assert (err.role, err.endpoint, err.attempts) == ("rejected", URL, 1)
    assert f"HTTP {code}" in err.reason and "the server says no" in err.reason
    assert "\n" not in str(err) and "rejected" in str(err) and URL in str(err)


async def test_non_retryable_after_retries_reports_all_attempts() -> None:
    server = FakeServer([status(503), status(400)])
    backend = make_backend(server)
    with pytest.raises(LLMError) as info:
        await backend.chat(HELLO, role="user")
    await backend.aclose()
    assert info.value.attempts == 2 and "HTTP 400" in info.value.reason


@pytest.mark.parametrize("exc", [httpx2.ReadTimeout, httpx2.ConnectTimeout, httpx2.PoolTimeout])
async def test_timeouts_are_retried(exc: type[Exception]) -> None:
    server = FakeServer([exc("too slow"), "in time"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="inducer")
    await backend.aclose()
    assert result.text == "in time" and result.attempts == 2


@pytest.mark.parametrize("exc", [httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError])
async def test_connection_errors_are_retried(exc: type[Exception]) -> None:
    server = FakeServer([exc("connection refused"), exc("connection reset"), "back"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="inducer")
    await backend.aclose()
    assert result.text == "back" and result.attempts == 3


@pytest.mark.parametrize("bad", [
    httpx2.Response(200, content=b"<html>not json</html>", headers={"content-type": "application/json"}),
    completion(""),
    completion("   \n"),
], ids=["malformed-body", "empty", "blank"])
async def test_malformed_and_empty_replies_are_retried(bad: httpx2.Response) -> None:
    server = FakeServer([bad, "good"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="inducer")
    await backend.aclose()
    assert result.text == "good" and result.attempts == 2


async def test_retries_exhausted_raise_llm_error_with_attempts() -> None:
    server = FakeServer(default=status(503))
    backend = make_backend(server, max_retries=2)
    with pytest.raises(LLMError) as info:
        await backend.chat(HELLO, role="judge")
    await backend.aclose()
    err = info.value
    assert server.count == 3
    assert (err.role, err.endpoint, err.attempts) == ("judge", URL, 3)
    assert "HTTP 503" in err.reason and "retries exhausted" in err.reason
    assert backend.stats["failures"] == 1


async def test_zero_retries_means_one_attempt() -> None:
    server = FakeServer(default=status(500))
    backend = make_backend(server, max_retries=0)
    with pytest.raises(LLMError) as info:
        await backend.chat(HELLO, role="judge")
    await backend.aclose()
    assert server.count == 1 and info.value.attempts == 1


async def test_run_wide_retry_budget_stops_retries_across_calls_and_backends() -> None:
    server = FakeServer(default=status(503))
    budget = RetryBudget(3)
    a = make_backend(server, max_retries=10, budget=budget)
    b = make_backend(server, max_retries=10, budget=budget)
    with pytest.raises(LLMError) as first:
        await a.chat(HELLO, role="user")
    assert first.value.attempts == 4 and "run retry budget exhausted" in first.value.reason
    with pytest.raises(LLMError) as second:
        await b.chat(HELLO, role="user")
    assert second.value.attempts == 1 and "run retry budget exhausted" in second.value.reason
    assert server.count == 5 and budget.spent == 3
    await a.aclose()
    await b.aclose()


async def test_backoff_is_exponential_with_seeded_full_jitter() -> None:
    server = FakeServer([status(500)] * 4 + ["done"])
    backend = make_backend(server, backoff_base=0.1, backoff_max=0.25, max_retries=5, seed=7)
    await backend.chat(HELLO, role="user")
    await backend.aclose()
    rng = random.Random(7)  # the backend's jitter is seeded: the waits are known in advance
    expected = [rng.uniform(0, min(0.25, 0.1 * 2 ** k)) for k in range(4)]
    gaps = [b.at - a.at for a, b in zip(server.seen, server.seen[1:])]
    assert len(gaps) == 4
    for gap, want in zip(gaps, expected):
        assert gap >= want - 1e-3, (gaps, expected)


async def test_a_retry_varies_the_seed_so_it_does_not_replay_the_same_sample() -> None:
    server = FakeServer([status(500), completion(""), "third time"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="user", sampling=Sampling(seed=10))
    await backend.aclose()
    assert result.attempts == 3
    assert [s.body["seed"] for s in server.seen] == [10, 11, 12]


async def test_retry_after_as_http_date_is_honoured() -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    server = FakeServer([status(429, {"retry-after": when}), "fine"])
    backend = make_backend(server)
    await backend.chat(HELLO, role="user")
    await backend.aclose()
    assert server.seen[1].at - server.seen[0].at >= 1.0  # the date has one-second resolution


@pytest.mark.parametrize("value", ["soon", "", "-5", "Wed, 99 Foo 2015"])
async def test_unusable_retry_after_falls_back_to_backoff(value: str) -> None:
    server = FakeServer([status(429, {"retry-after": value, "retry-after-ms": "x"}), "fine"])
    backend = make_backend(server)
    result = await backend.chat(HELLO, role="user")
    await backend.aclose()
    assert result.attempts == 2 and server.seen[1].at - server.seen[0].at < 1.0
