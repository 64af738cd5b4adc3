"""Client-side limits: the per-endpoint concurrency limit (held at a barrier),
least-outstanding routing across replicas, and the RPM/TPM token buckets."""

from __future__ import annotations

import time
from functools import partial

import anyio
import httpx2
import pytest
from gateway_fakes import FakeServer, completion, make_backend, status

from aloesim.agents.gateway import Endpoint, PeakLimiter, Sampling, TokenBucket

pytestmark = pytest.mark.anyio


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_peak_in_flight_never_exceeds_the_limit() -> None:
    gate = anyio.Event()
    server = FakeServer(gate=gate)
    backend = make_backend(server, concurrency=4)
    results = []

    async def one(i: int) -> None:
        results.append(await backend.chat([{"role": "user", "content": f"q{i}"}], role="user"))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
        await _wait_for(lambda: server.in_flight == 4)
        await anyio.sleep(0.3)  # give a fifth request every chance to slip through
        assert server.in_flight == 4 and server.count == 4
        assert backend.endpoints[0].outstanding == 50  # the rest wait for the limit
        gate.set()
    await backend.aclose()
    assert len(results) == 50
    assert server.peak == 4  # seen by the server
    assert backend.peak_in_flight == 4  # and by the limiter itself


async def test_limit_applies_per_endpoint() -> None:
    gate = anyio.Event()
    server = FakeServer(gate=gate)
    urls = ["http://a.test/v1", "http://b.test/v1"]
    backend = make_backend(server, urls=urls, concurrency=3)
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(partial(backend.chat, [{"role": "user", "content": f"q{i}"}], role="user"))
        await _wait_for(lambda: server.in_flight == 6)
        await anyio.sleep(0.2)
        assert server.in_flight == 6
        assert sorted(s.host for s in server.seen) == ["a.test"] * 3 + ["b.test"] * 3
        gate.set()
    await backend.aclose()
    assert [ep.limit.peak for ep in backend.endpoints] == [3, 3]


async def test_least_outstanding_routing_sends_less_to_a_slow_endpoint() -> None:
    # the slow replica is listed first, so ties alone would favour it
    urls = ["http://slow.test/v1", "http://fast1.test/v1", "http://fast2.test/v1"]
    server = FakeServer(delay={"slow.test": 0.5, "fast1.test": 0.02, "fast2.test": 0.02})
    backend = make_backend(server, urls=urls, concurrency=8)
    async with anyio.create_task_group() as tg:
        for i in range(60):  # requests arrive steadily, 50 per second
            tg.start_soon(partial(backend.chat, [{"role": "user", "content": str(i)}], role="user"))
            await anyio.sleep(0.02)
    await backend.aclose()
    counts = {h: sum(1 for s in server.seen if s.host == h) for h in ("slow.test", "fast1.test", "fast2.test")}
    assert sum(counts.values()) == 60
    # requests pile up on the slow replica, so new ones go elsewhere (round robin would give it 20)
    assert 1 <= counts["slow.test"] <= 8, counts
    assert counts["slow.test"] * 5 < counts["fast1.test"] + counts["fast2.test"], counts
    assert all(ep.outstanding == 0 for ep in backend.endpoints)


async def test_routing_spreads_a_burst_evenly() -> None:
    gate = anyio.Event()
    urls = [f"http://r{i}.test/v1" for i in range(3)]
    server = FakeServer(gate=gate)
    backend = make_backend(server, urls=urls, concurrency=2)
    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(partial(backend.chat, [{"role": "user", "content": str(i)}], role="user"))
        await _wait_for(lambda: server.count == 6)
        assert [ep.outstanding for ep in backend.endpoints] == [4, 4, 4]
        gate.set()
    await backend.aclose()


async def test_peak_limiter_counts_holders() -> None:
    limiter = PeakLimiter(2)
    entered = 0

    async def hold() -> None:
        nonlocal entered
        async with limiter:
            entered += 1
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        for _ in range(7):
            tg.start_soon(hold)
    assert entered == 7 and limiter.peak == 2 and limiter.in_flight == 0 and limiter.total == 2


async def test_token_bucket_allows_a_minute_then_spaces_by_rate() -> None:
    bucket = TokenBucket(per_minute=600)  # 10 per second, one minute's worth up front
    started = time.monotonic()
    await bucket.take(600)
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    for _ in range(3):
        await bucket.take()
    assert time.monotonic() - started >= 0.3 - 0.01


async def test_token_bucket_charge_can_go_negative_and_must_be_repaid() -> None:
    bucket = TokenBucket(per_minute=6000)  # 100 per second
    bucket.charge(6000 + 50)  # used a whole minute's worth and 50 more than reserved
    assert bucket.level < 0
    started = time.monotonic()
    await bucket.take(50)  # must repay ~50 and then find 50: ~1 s
    assert time.monotonic() - started >= 0.95


def test_token_bucket_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_rpm_limit_spaces_calls() -> None:
    server = FakeServer()
    backend = make_backend(server, rpm=120)  # 2 requests per second once the minute's burst is spent
    await backend.rpm.take(120)  # spend the burst
    start = time.monotonic()
    for i in range(3):
        await backend.chat([{"role": "user", "content": str(i)}], role="user")
    await backend.aclose()
    # request i can leave only once the bucket has refilled i+1 tokens
    arrivals = [s.at - start for s in server.seen]
    assert server.count == 3
    assert all(at >= 0.5 * (i + 1) - 0.02 for i, at in enumerate(arrivals)), arrivals


@pytest.mark.parametrize("usage,min_wait", [(6060, 0.6), (1, 0.0)])
async def test_tpm_charges_the_tokens_actually_used(usage: int, min_wait: float) -> None:
    server = FakeServer(default=lambda seen: completion("ok", prompt_tokens=usage - 1, completion_tokens=1))
    backend = make_backend(server, tpm=6000)  # 100 tokens per second
    sampling = Sampling(max_tokens=50)
    await backend.chat([{"role": "user", "content": "a" * 40}], role="user", sampling=sampling)
    done = time.monotonic()
    await backend.chat([{"role": "user", "content": "b" * 40}], role="user", sampling=sampling)
    await backend.aclose()
    wait = server.seen[1].at - done
    # the first reply used a minute's tokens and 60 more: the next call waits for ~120 to refill (1.2 s)
    assert wait >= min_wait, wait
    if min_wait == 0.0:
        assert wait < 0.5, wait


def test_connection_pool_is_sized_to_the_concurrency_limit() -> None:
    # a custom http client would otherwise fall back to httpx2's defaults (100 connections)
    ep = Endpoint("http://pool.test/v1", "key", 3, 30.0)
    pool = ep.client._client._transport._pool  # the real httpx2 transport's connection pool
    assert (pool._max_connections, pool._max_keepalive_connections) == (3, 3)
    assert ep.limit.total == 3 and ep.client.max_retries == 0  # the gateway does the retrying


def _dead_replica(seen):
    if seen.host == "dead.test":
        raise httpx2.ConnectError("connection refused")
    return completion(f"from {seen.host}")


async def test_a_dead_replica_is_avoided_after_it_fails() -> None:
    urls = ["http://dead.test/v1", "http://alive.test/v1"]  # the dead one first: ties would pick it
    server = FakeServer(default=_dead_replica)
    backend = make_backend(server, urls=urls, max_retries=2, backoff_max=5.0)  # cool-down: 5 s
    results = [await backend.chat([{"role": "user", "content": str(i)}], role="user") for i in range(5)]
    await backend.aclose()
    assert all(r.text == "from alive.test" for r in results)
    assert results[0].attempts == 2  # the first call found out, the retry went to the other replica
    assert all(r.attempts == 1 for r in results[1:])  # later calls skip the dead one while it cools down
    assert [s.host for s in server.seen].count("dead.test") == 1


async def test_a_cooled_down_replica_is_tried_again() -> None:
    urls = ["http://flaky.test/v1", "http://steady.test/v1"]
    script = [httpx2.ConnectError("refused")]
    server = FakeServer(default=lambda seen: script.pop() if (script and seen.host == "flaky.test")
                        else completion(seen.host))
    backend = make_backend(server, urls=urls, backoff_max=0.2)
    await backend.chat([{"role": "user", "content": "a"}], role="user")
    await anyio.sleep(0.3)  # longer than the cool-down (backoff_max)
    result = await backend.chat([{"role": "user", "content": "b"}], role="user")
    await backend.aclose()
    assert result.text == "flaky.test"  # back in rotation


async def test_when_every_replica_failed_they_are_all_still_tried() -> None:
    urls = ["http://a.test/v1", "http://b.test/v1"]
    server = FakeServer([status(503), status(503), "third"])
    backend = make_backend(server, urls=urls, max_retries=3, backoff_max=5.0)  # both cool down: both still tried
    result = await backend.chat([{"role": "user", "content": "x"}], role="user")
    await backend.aclose()
    assert result.text == "third" and result.attempts == 3
    assert [s.host for s in server.seen][:2] == ["a.test", "b.test"]


async def test_a_large_limit_is_split_over_several_clients_whose_pools_add_up() -> None:
    from aloesim.agents.gateway._backend import POOL_PER_CLIENT

    gate = anyio.Event()
    server = FakeServer(gate=gate)
    limit = 2 * POOL_PER_CLIENT + POOL_PER_CLIENT // 2  # not a multiple: uneven pools
    backend = make_backend(server, concurrency=limit)
    ep = backend.endpoints[0]
    assert len(ep.clients) == 3 and sum(ep._sizes) == limit and max(ep._sizes) - min(ep._sizes) <= 1
    async with anyio.create_task_group() as tg:
        for i in range(limit + 5):
            tg.start_soon(partial(backend.chat, [{"role": "user", "content": f"q{i}"}], role="user"))
        await _wait_for(lambda: server.in_flight == limit)
        await anyio.sleep(0.2)
        # every request holds a connection of its own client: no client over its pool
        assert server.in_flight == limit
        assert all(used <= size for used, size in zip(ep._in_flight, ep._sizes))
        assert ep._in_flight == ep._sizes
        gate.set()
    await backend.aclose()
    assert server.peak == limit
