"""``SpendLimit`` (``budget.usd``) in the gateway: once the spend reaches the
limit no new request is sent (not even by a call queued for an endpoint slot),
the requests already sent finish (their retries too), and the work is
cancelled once nothing is in flight. Over the in-process fake server, each
call priced $0.70 by an override."""

from __future__ import annotations

import anyio
import pytest
from gateway_fakes import URL, FakeServer, status

from aloesim.agents.gateway import Backend, BackendSettings, ModelPrice, Pricer, PricingSettings, SpendLimit

PER_CALL = 0.7  # 7 prompt tokens at $100,000 per million (the fake server's usage)

pytestmark = pytest.mark.anyio


def backend(server: FakeServer, limit: SpendLimit, concurrency: int) -> Backend:
    settings = BackendSettings(kind="openai", model="fake-model", base_url=URL, backoff_base=0.001, backoff_max=0.01,
                               concurrency=concurrency, api_key_env=None)
    pricer = Pricer(PricingSettings(models=(ModelPrice("fake-model", 100_000.0, 0.0),)))
    return Backend(settings, [URL], transport=server.transport, pricer=pricer, spend=limit)


async def run_calls(b: Backend, limit: SpendLimit, n: int, answered: list[str]) -> bool:
    async def one(i: int) -> None:
        result = await b.chat([{"role": "user", "content": f"call {i}"}], role="user")
        answered.append(result.text)

    with anyio.fail_after(10):
        async with limit.stop_when_reached() as stop, anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return stop.reached


async def test_calls_queued_for_a_slot_are_not_sent_once_the_limit_is_reached() -> None:
    server, limit = FakeServer(delay={"fake.test": 0.01}), SpendLimit(1.0)
    answered: list[str] = []
    assert await run_calls(backend(server, limit, concurrency=1), limit, 10, answered)
    # one at a time: $0.70 (below), $1.40 (reached): the 8 calls queued behind were never sent
    assert server.count == len(answered) == 2
    assert limit.spent == pytest.approx(2 * PER_CALL) and limit.in_flight == 0


async def test_requests_in_flight_finish_and_are_counted() -> None:
    server, limit = FakeServer(gate=anyio.Event()), SpendLimit(0.5)
    answered: list[str] = []
    b = backend(server, limit, concurrency=4)

    async def release() -> None:
        while server.count < 4:  # 4 requests sent (held by the server), 4 more calls queued for a slot
            await anyio.sleep(0.005)
        assert server.gate is not None
        server.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        assert await run_calls(b, limit, 8, answered)
    assert server.count == len(answered) == 4 and limit.spent == pytest.approx(4 * PER_CALL)


async def test_a_call_in_flight_retries_past_the_limit() -> None:
    server, limit = FakeServer(script=[status(500)], gate=anyio.Event()), SpendLimit(0.5)
    answered: list[str] = []
    b = backend(server, limit, concurrency=2)

    async def release() -> None:
        while server.count < 2:
            await anyio.sleep(0.005)
        assert server.gate is not None
        server.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        assert await run_calls(b, limit, 3, answered)
    # the two calls sent first both finish (one after a 500 and a retry); the third is never sent
    assert len(answered) == 2 and server.count == 3
    assert {s.body["messages"][0]["content"] for s in server.seen} == {"call 0", "call 1"}
    assert limit.spent == pytest.approx(2 * PER_CALL)


async def test_below_the_limit_nothing_stops() -> None:
    server, limit = FakeServer(), SpendLimit(100.0, spent=50.0)
    answered: list[str] = []
    assert not await run_calls(backend(server, limit, concurrency=4), limit, 5, answered)
    assert len(answered) == 5 and limit.spent == pytest.approx(50 + 5 * PER_CALL)


async def test_a_run_that_already_spent_its_limit_sends_nothing() -> None:
    server, limit = FakeServer(), SpendLimit(1.0, spent=1.0)
    answered: list[str] = []
    assert await run_calls(backend(server, limit, concurrency=4), limit, 3, answered)
    assert server.count == 0 and answered == []
