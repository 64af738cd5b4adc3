"""Baseline of the orchestration benchmark: a bare ``AsyncOpenAI`` loop.

N chat completion calls at concurrency C against the latency server, nothing
else (no store, no actors): what the client library itself costs. Other
benchmark scripts import ``bare_loop`` to measure it in the same run, on the
same server and concurrency, as the pipeline they compare with it.

Also measures the latency server's own capacity (``server_capacity``): a lean
raw-socket HTTP/1.1 load generator at zero latency, and the server's CPU per
request, to show the server is not the bottleneck.

    python benchmarks/bare_loop.py                       # 50 ms, C = 64 and 256
    python benchmarks/bare_loop.py --latency 0.05 --calls 5000 --concurrency 64,256,1024
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from openai import AsyncOpenAI, DefaultAioHttpClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Meter, latency_server, peak_rss_mb, run_benchmark

__all__ = ["bare_loop", "default_messages", "server_capacity"]

_SYSTEM = (
    "You are a helpful, friendly assistant. Keep your replies short and specific to the user's "
    "situation, ask a follow-up question when the user's preferences are unclear, and never "
    "invent facts about the user."
)


def default_messages(i: int) -> list[dict[str, str]]:
    """A small system + user conversation, different for every call ``i``."""
    return [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": f"Hi! Call {i}: could you suggest something fun to do this weekend?"},
    ]


async def bare_loop(
    base_url: str,
    calls: int,
    concurrency: int,
    *,
    model: str = "latency-server",
    messages: Any = default_messages,
    max_tokens: int = 64,
    warmup: bool = True,
    timeout: float = 120.0,
    clients: int = 1,
    http: str = "httpx2",
) -> dict[str, Any]:
    """Make ``calls`` chat completions at ``concurrency`` with ``AsyncOpenAI``
    (one client by default, pool of ``concurrency`` keep-alive connections, no
    retries) and
    return ``{calls, concurrency, wall_s, calls_per_s, cpu_ms_per_call,
    latency_p50_s, latency_p99_s, errors}``. ``messages(i)`` builds call i's
    messages. With ``warmup`` a first untimed round of ``concurrency`` calls
    opens the connections. ``clients`` > 1 spreads the calls over that many
    clients, each with a pool of ``concurrency / clients`` connections (httpx2's
    pool costs more CPU per request as it grows). ``timeout`` is generous on
    purpose: opening hundreds of connections at once on a busy loop can take
    longer than httpx2's default 5 s connect timeout. ``http="aiohttp"`` uses
    openai's aiohttp transport (``DefaultAioHttpClient``; needs ``aiohttp``)."""
    if http not in ("httpx2", "aiohttp"):
        raise ValueError(f"http is {http!r}; allowed: httpx2, aiohttp")
    pool = max(1, -(-concurrency // clients))
    limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
    http_class = httpx2.AsyncClient if http == "httpx2" else DefaultAioHttpClient
    openai_clients = [
        AsyncOpenAI(base_url=base_url, api_key="bench-not-a-key", max_retries=0,
                    http_client=http_class(limits=limits, timeout=httpx2.Timeout(timeout)))
        for _ in range(clients)
    ]
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def run(total: int, offset: int, record: bool) -> None:
        next_index = 0

        async def worker(client: AsyncOpenAI) -> None:
            nonlocal next_index
            while next_index < total:
                i = offset + next_index
                next_index += 1
                start = time.perf_counter()
                try:
                    await client.chat.completions.create(model=model, messages=messages(i), max_tokens=max_tokens)
                except Exception as err:  # noqa: BLE001 - counted, the loop goes on
                    errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                    continue
                if record:
                    latencies.append(time.perf_counter() - start)

        async with anyio.create_task_group() as tg:
            for k in range(min(concurrency, total)):
                tg.start_soon(worker, openai_clients[k % clients])

    try:
        if warmup:
            await run(concurrency, calls, record=False)
        with Meter() as meter:
            await run(calls, 0, record=True)
    finally:
        for client in openai_clients:
            await client.close()
    latencies.sort()
    done = len(latencies)
    return {
        "calls": calls,
        "concurrency": concurrency,
        "clients": clients,
        "http": http,
        "ok": done,
        "errors": errors,
        "wall_s": round(meter.wall_s, 3),
        "calls_per_s": round(done / meter.wall_s, 1) if meter.wall_s else 0.0,
        "cpu_s": round(meter.cpu_s, 3),
        "cpu_ms_per_call": round(1000 * meter.cpu_s / max(done, 1), 3),
        "latency_p50_s": round(statistics.median(latencies), 4) if latencies else None,
        "latency_p99_s": round(latencies[int(0.99 * (done - 1))], 4) if latencies else None,
    }


async def _raw_client(host: str, port: int, request: bytes, counter: list[int], total: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while counter[0] < total:
            counter[0] += 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counter[1] += 1
    finally:
        writer.close()


async def server_capacity(url: str, requests: int = 20000, connections: int = 64) -> dict[str, Any]:
    """Requests/s the server sustains against a lean keep-alive HTTP/1.1 client
    (raw asyncio sockets, far cheaper per request than ``AsyncOpenAI``) and the
    server's CPU ms per request (from ``/stats``). Set the server's latency to
    0 first to measure the server alone."""
    host, port = url.split("//", 1)[1].split(":")
    body = json.dumps({"model": "latency-server", "messages": default_messages(0), "max_tokens": 64}).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    def server_cpu() -> float:
        import urllib.request

        with urllib.request.urlopen(url + "/stats", timeout=30) as resp:
            return json.loads(resp.read())["cpu_s"]

    counter = [0, 0]
    cpu0 = server_cpu()
    with Meter() as meter:
        async with anyio.create_task_group() as tg:
            for _ in range(connections):
                tg.start_soon(_raw_client, host, int(port), request, counter, requests)
    cpu = server_cpu() - cpu0
    return {
        "requests": counter[1],
        "connections": connections,
        "wall_s": round(meter.wall_s, 3),
        "requests_per_s": round(counter[1] / meter.wall_s, 1),
        "load_generator_cpu_ms_per_request": round(1000 * meter.cpu_s / counter[1], 3),
        "server_cpu_ms_per_request": round(1000 * cpu / counter[1], 3),
        "server_max_requests_per_s_one_core": round(counter[1] / cpu, 1) if cpu else None,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with latency_server(args.latency) as server:
        for concurrency in args.concurrency:
            for _ in range(args.repeat):
                cpu0 = server.cpu_s()
                stats0 = server.stats()
                result = await bare_loop(server.base_url, args.calls, concurrency, clients=args.clients, http=args.http)
                served = server.stats()["requests"] - stats0["requests"]
                result["server_cpu_ms_per_request"] = round(1000 * (server.cpu_s() - cpu0) / max(served, 1), 3)
                result["load_average_1min"] = round(os.getloadavg()[0], 2)
                runs.append(result)
                print(
                    f"bare loop  latency {args.latency * 1000:.0f} ms  concurrency {concurrency:5d}: "
                    f"{result['calls_per_s']:8.1f} calls/s  {result['cpu_ms_per_call']:.2f} ms client CPU/call  "
                    f"p50 {result['latency_p50_s'] * 1000:.0f} ms  errors {result['errors'] or 0}",
                    flush=True,
                )
        capacity = None
        if not args.no_capacity:
            server.configure(latency=0.0)
            capacity = await server_capacity(server.url, args.capacity_requests)
            print(
                f"server capacity (latency 0, raw keep-alive client, {capacity['connections']} connections): "
                f"{capacity['requests_per_s']:.0f} requests/s; server CPU {capacity['server_cpu_ms_per_request']:.3f} "
                f"ms/request (= {capacity['server_max_requests_per_s_one_core']:.0f}/s on one core)",
                flush=True,
            )
    summary = {}
    for concurrency in args.concurrency:
        mine = [r for r in runs if r["concurrency"] == concurrency]
        summary[str(concurrency)] = {
            "calls_per_s_median": statistics.median(r["calls_per_s"] for r in mine),
            "calls_per_s_best": max(r["calls_per_s"] for r in mine),
            "cpu_ms_per_call_median": statistics.median(r["cpu_ms_per_call"] for r in mine),
            "cpu_ms_per_call_best": min(r["cpu_ms_per_call"] for r in mine),
        }
    return {
        "latency_s": args.latency,
        "calls_per_run": args.calls,
        "http": args.http,
        "clients": args.clients,
        "summary_by_concurrency": summary,
        "runs": runs,
        "server_capacity": capacity,
        "client_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare AsyncOpenAI loop against the latency server.")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency in seconds (default 0.05)")
    parser.add_argument("--calls", type=int, default=4000, help="timed calls per concurrency level")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256],
                        help="comma list of concurrency levels (default 64,256)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per concurrency level (median and best kept)")
    parser.add_argument("--clients", type=int, default=1, help="AsyncOpenAI clients sharing the calls (default 1)")
    parser.add_argument("--http", choices=["httpx2", "aiohttp"], default="httpx2",
                        help="HTTP transport of the openai client (default httpx2, the SDK's default)")
    parser.add_argument("--capacity-requests", type=int, default=20000, help="requests of the capacity test")
    parser.add_argument("--no-capacity", action="store_true", help="skip the server capacity test")
    parser.add_argument("--name", default="bare_loop", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)
    return run_benchmark(_main, args)


if __name__ == "__main__":
    sys.exit(main())
