"""Adaptive concurrency (``backend.adaptive``): the AIMD controller on its own,
the rate-limit headers it reads, the settings, the gateway wiring (fake
server), and the fast end-to-end check against the latency server's hidden
RPM/TPM budget (``benchmarks/adaptive_rate.py``: at least 90% of the allowed
rate after warm-up, at most 5% of requests refused, with and without
headers; a fixed limit compared)."""

from __future__ import annotations

import time

import anyio
import pytest
from gateway_fakes import FakeServer, make_backend, status

from aloesim.agents.gateway import (
    AdaptiveLimiter,
    Backend,
    BackendSettings,
    PeakLimiter,
    RateHeaders,
    Sampling,
)
from aloesim.agents.gateway._adaptive import CATCH_UP_S, duration_s
from aloesim.core.errors import ConfigError

pytestmark = pytest.mark.anyio


def test_reset_durations_in_openai_format() -> None:
    assert duration_s("6m0s") == 360.0
    assert duration_s("20ms") == pytest.approx(0.02)
    assert duration_s("1h2m3.5s") == pytest.approx(3723.5)
    assert duration_s("1.5") == 1.5
    assert duration_s("soon") is None and duration_s("5x") is None and duration_s(None) is None
    assert duration_s("-3") is None


def test_rate_headers_read() -> None:
    rate = RateHeaders.read({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
                             "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
                             "x-ratelimit-remaining-tokens": "nan", "retry-after-ms": "250"})
    assert rate == RateHeaders(limit_requests=500, limit_tokens=30000, remaining_requests=499,
                               remaining_tokens=None, reset_requests=pytest.approx(0.12), retry_after=0.25)
    assert rate.any and not RateHeaders.read({}).any and not RateHeaders.read(None).any


async def _hold(limiter: AdaptiveLimiter, n: int) -> None:
    """Enter the limit n times at once and answer them all (a round trip at full use)."""
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            async def one() -> None:
                async with limiter:
                    await anyio.sleep(0.01)
                    limiter.answered(0.01)
            tg.start_soon(one)


async def test_it_starts_at_the_ceiling_and_a_refusal_halves_once_per_window() -> None:
    limiter = AdaptiveLimiter(ceiling=64, floor=1)
    assert limiter.total == 64  # no warm-up: a server that refuses nothing sees the fixed limit
    await _hold(limiter, 100)
    assert limiter.peak == 64 and limiter.total == 64
    before = time.monotonic()  # three calls sent before the first cut: they answer for the old limit
    for _ in range(3):
        limiter.refused(sent_at=before)
    assert limiter.total == 32 and limiter.cuts == 1 and limiter.refusals == 3
    limiter.refused(sent_at=time.monotonic())  # sent after the cut, still refused: it cuts again
    assert limiter.total == 16 and limiter.cuts == 2
    limiter.latency = 0.05
    await _hold(limiter, 16)
    assert limiter.total == 16  # no growth within a round trip of a refusal
    await anyio.sleep(0.06)
    await _hold(limiter, 16 * 12)  # 12 round trips after a cut: at most +1 each, not +1 per answer
    assert 17 <= limiter.total <= 16 + 12


async def test_without_a_send_time_a_round_trip_is_the_mean_latency() -> None:
    limiter = AdaptiveLimiter(ceiling=64, floor=1)
    limiter.latency = 0.05
    limiter.refused()
    limiter.refused()
    assert limiter.total == 32 and limiter.cuts == 1
    await anyio.sleep(0.06)
    limiter.refused()
    assert limiter.total == 16 and limiter.cuts == 2


async def test_the_limit_stays_within_floor_and_ceiling_and_grows_only_when_used() -> None:
    limiter = AdaptiveLimiter(ceiling=4, floor=2)
    assert limiter.total == 4  # starts at the ceiling
    await _hold(limiter, 50)
    assert limiter.total == 4 and limiter.peak == 4  # never above the ceiling
    for _ in range(10):
        limiter.refused(sent_at=time.monotonic())  # every refusal a new window
    assert limiter.total == 2 and limiter.cuts == 10  # never below the floor
    idle = AdaptiveLimiter(ceiling=64, floor=1)
    for _ in range(8):
        idle.refused(sent_at=time.monotonic())
    assert idle.total == 1
    for _ in range(40):
        await _hold(idle, 1)
    assert idle.total == 3  # one caller at a time: it grew while the limit was in use, then stopped


async def test_headers_set_the_limit_and_pace_the_calls() -> None:
    limiter = AdaptiveLimiter(ceiling=64, floor=1)
    async with limiter:
        limiter.answered(0.5, {"x-ratelimit-limit-requests": "1200", "x-ratelimit-remaining-requests": "900"})
    # 20 calls/s allowed x 0.5 s each = 10 in flight fit; the limit leaves a quarter of room; paced at 50 ms
    assert limiter.total == 13 and limiter.steered == 1
    start = time.monotonic()
    for _ in range(16):
        async with limiter:
            pass
    # one every 50 ms, less the few a late loop may make up (CATCH_UP_S)
    assert time.monotonic() - start >= (15 - CATCH_UP_S / 0.05) * 0.05 * 0.9


async def test_nothing_left_holds_new_calls_until_refilled() -> None:
    limiter = AdaptiveLimiter(ceiling=8, floor=1)
    async with limiter:
        limiter.answered(0.1, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"})
    start = time.monotonic()
    async with limiter:
        pass
    assert time.monotonic() - start >= 0.25 and limiter.paused_s >= 0.25


async def test_retry_after_of_a_refusal_holds_new_calls() -> None:
    limiter = AdaptiveLimiter(ceiling=8, floor=1)
    assert limiter.refused({"retry-after-ms": "300"}) == 0.0  # the pause holds everyone: no place kept
    start = time.monotonic()
    async with limiter:
        pass
    assert time.monotonic() - start >= 0.25
    limiter.latency = 0.2
    assert limiter.refused() == 0.2  # no headers: the refused call keeps its place for a round trip


def test_settings_adaptive_defaults_and_bounds() -> None:
    assert BackendSettings().adaptive is False  # the embedded default keeps a fixed limit
    assert BackendSettings.from_config({"kind": "openai", "api_key_env": None}).adaptive is True
    assert BackendSettings.from_config({"kind": "vllm"}).adaptive is False
    with pytest.raises(ConfigError, match="min_concurrency"):
        BackendSettings(adaptive=True, concurrency=4, min_concurrency=8)


async def test_fixed_limit_is_todays_limiter_and_adaptive_cuts_on_429() -> None:
    fixed = make_backend(FakeServer(), concurrency=4, adaptive=False)
    assert isinstance(fixed.endpoints[0].limit, PeakLimiter) and fixed.endpoints[0].adaptive is None
    assert fixed.limits() == {"model": "fake-model", "adaptive": False, "limit": 4, "max": 4}
    await fixed.aclose()

    server = FakeServer([status(429), "ok"])
    backend = make_backend(server, concurrency=4, adaptive=True, min_concurrency=1, max_retries=2)
    limiter = backend.endpoints[0].adaptive
    assert isinstance(limiter, AdaptiveLimiter) and backend.endpoints[0].limit is limiter
    result = await backend.chat([{"role": "user", "content": "x"}], role="user")
    await backend.aclose()
    assert result.text == "ok" and limiter.refusals == 1 and limiter.cuts == 1
    assert limiter.tokens_per_call == 10  # the fake's usage: 7 + 3
    limits = backend.limits()
    assert limits["adaptive"] is True and limits["max"] == 4 and limits["cuts"] == 1
    assert limits["endpoints"][backend.endpoints[0].base_url]["refusals"] == 1


@pytest.mark.slow  # about 25 s: three 14 s runs side by side, then a 4 s one
async def test_rate_limit_budget_is_held_adaptive_vs_fixed() -> None:
    """The hidden budget of the latency server, driven through the gateway by 80 callers (ceiling 64):
    adaptive, with and without headers, RPM- and TPM-bound, holds >= 90% of the allowed rate with <= 5%
    of requests refused after warm-up; the fixed limit is refused most of the time."""
    import structlog
    from _common import latency_server
    from adaptive_rate import SCENARIOS, drive

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    # the servers' buckets hold 1 s of budget (OpenAI's: 60 s); warm-up: the first burst at the ceiling and its cuts
    cases = {"rpm, headers": ("--rpm=1200",), "tpm, no headers": ("--tpm=48000", "--rpm=6000", "--no-rate-headers"),
             "rpm, no headers": ("--rpm=1200", "--no-rate-headers")}
    assert SCENARIOS["rpm"] == {"rpm": 1200.0} and SCENARIOS["tpm"] == {"tpm": 48000.0, "rpm": 6000.0}
    results = {}
    with latency_server(0.5, extra_args=cases["rpm, headers"]) as a, \
            latency_server(0.5, extra_args=cases["tpm, no headers"]) as b, \
            latency_server(0.5, extra_args=cases["rpm, no headers"]) as c:
        servers = dict(zip(cases, (a, b, c)))

        async def run(name: str) -> None:
            server = servers[name]
            results[name] = await drive(server.base_url, server.stats, adaptive=True, ceiling=64, callers=80,
                                        seconds=14.0, warmup=5.0)

        async with anyio.create_task_group() as tg:  # side by side: one wall clock for the three
            for name in cases:
                tg.start_soon(run, name)
    with latency_server(0.5, extra_args=cases["rpm, no headers"]) as d:  # alone: its 429s would load the client
        results["rpm, no headers, fixed"] = await drive(d.base_url, d.stats, adaptive=False, ceiling=64, callers=128,
                                                        seconds=4.0, warmup=1.5)
    summary = {k: (v["rate_ratio"], v["refused_share"], v["final_limit"]["limit"]) for k, v in results.items()}
    for name in cases:
        assert results[name]["rate_ratio"] >= 0.9, summary
        assert results[name]["refused_share"] <= 0.05, summary
        assert results[name]["final_limit"]["limit"] < 64, summary  # it found a limit below the ceiling
    assert results["rpm, headers"]["final_limit"]["steered"] > 0, summary
    assert results["rpm, no headers, fixed"]["refused_share"] > 0.3, summary


@pytest.mark.integration
async def test_adaptive_limit_on_the_real_embedded_server_stays_at_the_ceiling(embedded_url: str) -> None:
    """The real llama.cpp server (SmolLM2-135M) sends no rate-limit headers and refuses nothing: the
    adaptive limit starts at the ceiling and stays there (all of it used, never cut), and every call is
    answered."""
    settings = BackendSettings(kind="embedded", model="SmolLM2-135M-Instruct", base_url=embedded_url,
                               concurrency=3, adaptive=True, min_concurrency=1, timeout=120, max_retries=2)
    backend = Backend(settings, [embedded_url], cache=False)
    limiter = backend.endpoints[0].adaptive
    replies = []

    async def one(i: int) -> None:
        replies.append(await backend.chat([{"role": "user", "content": f"Say hello to friend number {i}."}],
                                          role="user", sampling=Sampling(max_tokens=8, temperature=0.0)))

    try:
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
    finally:
        await backend.aclose()
    assert len(replies) == 6 and all(r.text.strip() for r in replies)
    assert limiter.cuts == 0 and limiter.refusals == 0 and limiter.steered == 0
    assert limiter.total == 3 and limiter.peak == 3 and limiter.latency > 0 and limiter.tokens_per_call > 0
