"""The latency server's hidden rate limit (``--rpm``/``--tpm``): what it admits,
what it refuses with a 429, and the rate-limit headers it sends (or not)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from latency_server import Budget, ServerConfig, serve_in_thread


def _chat(root: str, i: int) -> tuple[int, dict[str, str], dict]:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}).encode()
    request = urllib.request.Request(root + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), json.loads(err.read())


def _stats(root: str) -> dict:
    with urllib.request.urlopen(root + "/stats", timeout=10) as resp:
        return json.loads(resp.read())


def test_requests_beyond_the_budget_are_refused_with_headers() -> None:
    # 6 per minute, a bucket of 20 s: two requests, then nothing for 10 s
    with serve_in_thread(ServerConfig(latency=0.0, rpm=6, burst=20)) as root:
        first, second, third = (_chat(root, i) for i in range(3))
        stats = _stats(root)
    assert first[0] == second[0] == 200 and third[0] == 429
    assert first[1]["x-ratelimit-limit-requests"] == "6" and first[1]["x-ratelimit-remaining-requests"] == "1"
    assert second[1]["x-ratelimit-remaining-requests"] == "0"
    assert first[1]["x-ratelimit-reset-requests"].endswith("ms")
    assert 9000 <= int(third[1]["retry-after-ms"]) <= 10000  # one request refills in 10 s
    assert third[2]["error"]["type"] == "rate_limit_error"
    assert stats["admitted"] == 2 and stats["refused"] == 1 and stats["admitted_tokens"] > 0
    assert stats["budget_level"]["requests"] < 0.1


def test_tokens_budget_and_no_headers() -> None:
    with serve_in_thread(ServerConfig(latency=0.0, tpm=60, burst=60, rate_headers=False)) as root:
        codes = [_chat(root, i) for i in range(10)]
        stats = _stats(root)
    admitted = [c for c in codes if c[0] == 200]
    refused = [c for c in codes if c[0] == 429]
    assert admitted and refused and stats["admitted"] == len(admitted) and stats["refused"] == len(refused)
    assert stats["admitted_tokens"] == sum(c[2]["usage"]["total_tokens"] for c in admitted) <= 60
    assert all(not any(k.lower().startswith(("x-ratelimit", "retry-after")) for k in c[1]) for c in codes)


def test_budget_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="burst"):
        ServerConfig(rpm=10, burst=0)
    budget = Budget(rpm=60, tpm=0, burst=1)
    assert budget.take(5) is None and budget.take(5) == pytest.approx(1.0, abs=0.05)
