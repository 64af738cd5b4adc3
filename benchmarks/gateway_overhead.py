"""What the gateway costs per call, measured against an in-process fake
server (``httpx2.MockTransport``) so the model's time is zero.

Three ways of sending the same N chat completions, one after another and
with C at once:
  bare      AsyncOpenAI over the same transport (the floor: SDK + httpx2)
  gateway   Backend without a recorder (limits, routing, retries bookkeeping)
  recorded  Backend with a StoreRecorder on a real SQLite file (call
            records + cache lookups through the batching writer)
plus ``cached``: the same requests again, answered from the response cache.

    python benchmarks/gateway_overhead.py [--calls 500] [--concurrency 16]

Prints microseconds per call and writes benchmarks/results/gateway_overhead.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results

from aloesim.agents.gateway import Backend, BackendSettings, Sampling, StoreRecorder
from aloesim.environment.store import Store

URL = "http://bench.test/v1"
BODY = {
    "id": "x", "object": "chat.completion", "created": 0, "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
}


def handler(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json=BODY)


async def timed(n: int, concurrency: int, call) -> float:
    """Microseconds per call for n calls, ``concurrency`` at a time."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            await call(i)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return (time.perf_counter() - start) / n * 1e6


async def main(n: int, concurrency: int) -> dict:
    transport = httpx2.MockTransport(handler)
    client = openai.AsyncOpenAI(base_url=URL, api_key="x", max_retries=0,
                                http_client=openai.DefaultAsyncHttpxClient(transport=transport))
    settings = BackendSettings(kind="openai", model="bench", base_url=URL, concurrency=max(concurrency, 1))
    msgs = lambda tag, i: [{"role": "user", "content": f"{tag} {i}"}]
    sampling = Sampling(max_tokens=16, seed=0)
    results: dict[str, dict[str, float]] = {}

    async def bare(tag: str):
        return lambda i: client.chat.completions.create(model="bench", messages=msgs(tag, i), max_tokens=16)

    def via(backend: Backend, tag: str):
        return lambda i: backend.chat(msgs(tag, i), role="b", sampling=sampling)

    for c in (1, concurrency):
        row = results.setdefault(f"concurrency_{c}", {})
        await timed(20, c, await bare("warm"))
        row["bare_us"] = round(await timed(n, c, await bare(f"bare{c}")), 1)
        backend = Backend(settings, [URL], transport=transport)
        row["gateway_us"] = round(await timed(n, c, via(backend, f"gw{c}")), 1)
        await backend.aclose()
        with tempfile.TemporaryDirectory() as tmp:
            async with Store.open(Path(tmp) / "bench.db") as store:
                backend = Backend(settings, [URL], transport=transport, recorder=StoreRecorder(store))
                row["recorded_us"] = round(await timed(n, c, via(backend, f"rec{c}")), 1)
                fresh = Backend(settings, [URL], transport=transport, recorder=StoreRecorder(store))
                row["cached_us"] = round(await timed(n, c, via(fresh, f"rec{c}")), 1)  # same requests again
                assert fresh.stats["cached"] == n, fresh.stats
                await backend.aclose()
                await fresh.aclose()
            row["store_batches_per_op"] = round(store.batches / max(store.ops, 1), 3)
        row["gateway_overhead_us"] = round(row["gateway_us"] - row["bare_us"], 1)
        row["recording_overhead_us"] = round(row["recorded_us"] - row["gateway_us"], 1)
    await client.close()
    return {"calls": n, **results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    out = anyio.run(main, args.calls, args.concurrency)
    for key, row in out.items():
        print(key, row)
    print("written:", write_results("gateway_overhead", out))
