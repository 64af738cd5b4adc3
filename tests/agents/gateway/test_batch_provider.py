"""OpenAI's Batch API through ``OpenAIBatches``, against the loopback fake
(tests/support/batch_api.py): upload, submit, the states, output and error
files, partial failures, failed / expired / cancelled batches, file splitting
and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import pytest

from aloesim.agents.gateway import parse_reply
from aloesim.agents.gateway.batch import BatchError, OpenAIBatches, split_lines
from aloesim.agents.gateway.batch._provider import request_line
from tests.support.batch_api import BatchAPI

pytestmark = pytest.mark.anyio


@pytest.fixture
def api() -> Iterator[BatchAPI]:
    with BatchAPI(validating_s=0.05, in_progress_s=0.15) as fake:
        yield fake


def body(i: int) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {i}"}], "temperature": 0.0,
            "max_tokens": 64, "seed": i}


async def run_batch(provider: OpenAIBatches, n: int) -> tuple[str, list[str], dict]:
    file_id = await provider.upload([request_line(f"req-{i}", body(i)) for i in range(n)])
    batch_id = await provider.submit(file_id)
    states = []
    while True:
        status = await provider.poll(batch_id)
        if not states or states[-1] != status.state:
            states.append(status.state)
        if status.final:
            break
        await anyio.sleep(0.02)
    return batch_id, states, {line.custom_id: line for line in await provider.results(status)}


async def test_a_batch_goes_validating_in_progress_completed_and_answers_every_request(api: BatchAPI) -> None:
    provider = OpenAIBatches(api.url, "sk-test")
    try:
        _batch_id, states, results = await run_batch(provider, 5)
    finally:
        await provider.aclose()
    assert states == ["validating", "in_progress", "completed"]
    assert sorted(results) == [f"req-{i}" for i in range(5)]
    for i in range(5):  # each answer is the fake model's answer to that very request
        reply = parse_reply(results[f"req-{i}"].body)
        assert reply.text == api.complete(body(i))["choices"][0]["message"]["content"]
    assert api.count("POST", "/v1/files") == 1 and api.count("POST", "/v1/batches") == 1
    assert api.submitted == [[f"req-{i}" for i in range(5)]]


async def test_partial_failures_come_back_in_the_error_file(api: BatchAPI) -> None:
    api.fail_rate = 0.5
    provider = OpenAIBatches(api.url, "sk-test")
    try:
        _, states, results = await run_batch(provider, 40)
    finally:
        await provider.aclose()
    failed = [r for r in results.values() if r.body is None]
    assert states[-1] == "completed" and len(results) == 40
    assert 5 < len(failed) < 35
    assert all(r.error.startswith("HTTP 500") for r in failed)


async def test_failed_expired_and_cancelled_batches(api: BatchAPI) -> None:
    provider = OpenAIBatches(api.url, "sk-test")
    try:
        api.fail_batches = 1
        _, states, results = await run_batch(provider, 4)
        assert states[-1] == "failed" and results == {}
        api.expire_batches = 1
        _, states, results = await run_batch(provider, 4)
        assert states[-1] == "expired"
        assert [r.body is not None for r in results.values()].count(True) == 2
        assert min(r.error for r in results.values() if r.body is None).startswith("batch_expired")
        api.hold = True
        batch_id = await provider.submit(await provider.upload([request_line("x", body(1))]))
        await provider.cancel(batch_id)
        assert (await provider.poll(batch_id)).state == "cancelling"
        with anyio.fail_after(5):
            while (status := await provider.poll(batch_id)).state != "cancelled":
                await anyio.sleep(0.02)
        assert status.final
    finally:
        await provider.aclose()


async def test_a_refused_upload_is_a_one_line_batch_error_without_the_key(api: BatchAPI) -> None:
    api.max_requests = 2
    provider = OpenAIBatches(api.url, "sk-secret-key-123456")
    try:
        with pytest.raises(BatchError) as err:
            await provider.upload([request_line(f"r{i}", body(i)) for i in range(3)])
    finally:
        await provider.aclose()
    assert "HTTP 400" in str(err.value) and "\n" not in str(err.value)
    assert "sk-secret" not in str(err.value)


async def test_an_unreachable_provider_is_a_batch_error_after_its_retries() -> None:
    provider = OpenAIBatches("http://127.0.0.1:9/v1", "k", attempts=2)
    try:
        with pytest.raises(BatchError, match="connection error"):
            await provider.poll("batch_1")
    finally:
        await provider.aclose()


def test_split_lines_respects_the_request_and_byte_limits() -> None:
    lines = [request_line(f"r{i}", body(i)) for i in range(10)]
    assert [len(f) for f in split_lines(lines, 4, 10**6)] == [4, 4, 2]
    size = len(lines[0])
    by_bytes = split_lines(lines, 100, size * 3 + 2)
    assert all(sum(map(len, f)) <= size * 3 + 2 for f in by_bytes) and sum(map(len, by_bytes)) == 10
    assert [json.loads(x)["custom_id"] for f in by_bytes for x in f] == [f"r{i}" for i in range(10)]
    with pytest.raises(ValueError, match="over the batch file limit"):
        split_lines(lines, 100, 10)
