"""Does the embedded backend get faster with more than one request in flight?

The embedded default runs one llama.cpp server (llama-cpp-python's
``llama_cpp.server``) with ``backend.concurrency=1``: one request in flight.
This script sends one fixed, small workload (``--requests`` chat completions,
short varied prompts, ``--max-tokens`` each, temperature 0, fixed seeds) to:

* ``1x1``: one server, one request in flight (the default);
* ``1x2``: one server, two requests in flight (``backend.concurrency=2``).
  llama.cpp's own server would decode them together in two slots
  (``--parallel 2``, continuous batching); llama-cpp-python 0.3.36's server
  has no slots (no ``n_parallel`` setting): it decodes one request at a time
  and the second waits, so this measures what queueing at the server buys
  (the client's latency hidden behind decoding);
* ``2x1``: two servers (``backend.servers=2``, threads split by
  ``default_threads``), one request in flight each, requests taken from one
  queue.

Each configuration runs ``--repeats`` times, interleaved (1x1, 1x2, 2x1, 1x1,
...), so a change of machine load hits all of them alike. Printed: calls/s,
output tokens/s and wall time per run, the median of each, the ratios to
``1x1``, and the load average (``uptime``) before and after every run: on a
loaded 2-core machine the ratios are only as good as the load was steady.

    python benchmarks/embedded_parallel.py                       # 12 requests x 48 tokens, 2 repeats
    python benchmarks/embedded_parallel.py --requests 6 --repeats 1
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import structlog
from openai import AsyncOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results

from aloesim.agents.servers import default_threads, embedded_servers

MODEL = "SmolLM2-135M-Instruct"
CONFIGS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}  # name: (servers, in flight per server)
TOPICS = ["gardening", "chess", "baking bread", "a rainy day", "learning Spanish", "a job interview",
          "cycling to work", "a birthday party", "moving house", "a first marathon", "jazz records",
          "a broken laptop", "a camping trip", "night shifts", "adopting a cat", "a new neighbour"]


def workload(n: int, max_tokens: int) -> list[dict[str, Any]]:
    """The fixed requests: a simulated user's message about a topic, as the demo's roles send."""
    return [{
        "model": MODEL, "max_tokens": max_tokens, "temperature": 0.0, "seed": i,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer in a friendly, personal way."},
            {"role": "user", "content": f"I have been thinking about {TOPICS[i % len(TOPICS)]} a lot lately. "
                                        "What would you suggest I do this week?"},
        ],
    } for i in range(n)]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def drive(urls: list[str], requests: list[dict[str, Any]], per_server: int) -> dict[str, Any]:
    """Send every request, ``per_server`` in flight on each server, from one queue."""
    queue = list(reversed(requests))
    tokens = errors = 0
    clients = [AsyncOpenAI(base_url=u, api_key="unused", max_retries=0, timeout=600) for u in urls]

    async def worker(client: AsyncOpenAI) -> None:
        nonlocal tokens, errors
        while queue:
            kwargs = queue.pop()
            try:
                reply = await client.chat.completions.create(**kwargs)
            except Exception:  # noqa: BLE001 - counted, shown
                errors += 1
                continue
            tokens += reply.usage.completion_tokens if reply.usage else 0

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for client in clients:
            for _ in range(per_server):
                tg.start_soon(worker, client)
    wall = time.perf_counter() - t0
    for client in clients:
        await client.close()
    done = len(requests) - errors
    return {"wall_s": round(wall, 2), "calls": done, "errors": errors, "output_tokens": tokens,
            "calls_per_s": round(done / wall, 3), "tokens_per_s": round(tokens / wall, 2)}


async def run_config(name: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    servers, per_server = CONFIGS[name]
    async with embedded_servers(n=servers) as urls:
        await drive(urls[:1], requests[:1], 1)  # warm-up: model pages, first prompt
        before = load_average()
        result = await drive(urls, requests, per_server)
    return {"config": name, "servers": servers, "in_flight_per_server": per_server,
            "threads_per_server": default_threads(servers), **result,
            "load_before": before, "load_after": load_average()}


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


async def main(args: argparse.Namespace) -> None:
    requests = workload(args.requests, args.max_tokens)
    runs: list[dict[str, Any]] = []
    print(f"workload: {args.requests} requests x max_tokens {args.max_tokens}; repeats {args.repeats}; "
          f"cores usable {len(os.sched_getaffinity(0))}; load at start {load_average()}")
    for rep in range(args.repeats):
        for name in args.configs:
            r = await run_config(name, requests)
            r["repeat"] = rep
            runs.append(r)
            print(f"  {name} #{rep}: {r['wall_s']:7.2f} s  {r['calls_per_s']:.3f} calls/s  "
                  f"{r['tokens_per_s']:6.2f} tok/s  errors {r['errors']}  load {r['load_before']} -> "
                  f"{r['load_after']}", flush=True)
    summary = {}
    for name in args.configs:
        mine = [r for r in runs if r["config"] == name]
        summary[name] = {"wall_s": median(mine, "wall_s"), "calls_per_s": median(mine, "calls_per_s"),
                         "tokens_per_s": median(mine, "tokens_per_s"),
                         "spread_wall_s": [min(r["wall_s"] for r in mine), max(r["wall_s"] for r in mine)]}
    base = summary.get("1x1")
    print("median per configuration (ratio to 1x1):")
    for name, s in summary.items():
        if base:
            s["calls_per_s_ratio"] = round(s["calls_per_s"] / base["calls_per_s"], 3)
            s["tokens_per_s_ratio"] = round(s["tokens_per_s"] / base["tokens_per_s"], 3)
            s["wall_ratio"] = round(s["wall_s"] / base["wall_s"], 3)
        print(f"  {name}: wall {s['wall_s']:.2f} s (runs {s['spread_wall_s']}), {s['calls_per_s']:.3f} calls/s"
              + (f" (x{s['calls_per_s_ratio']}), {s['tokens_per_s']:.2f} tok/s (x{s['tokens_per_s_ratio']})"
                 if base else ""))
    loads = [r["load_before"][0] for r in runs] + [r["load_after"][0] for r in runs]
    print(f"1-minute load average during the runs: {min(loads)} - {max(loads)} on {os.cpu_count()} cores "
          f"(now, as uptime shows it: load average {', '.join(str(x) for x in load_average())})")
    path = write_results(args.name, {"workload": {"requests": args.requests, "max_tokens": args.max_tokens},
                                     "runs": runs, "median": summary,
                                     "load_1min_range": [min(loads), max(loads)]})
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--name", default="embedded_parallel")
    ns = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if min(ns.requests, ns.max_tokens, ns.repeats) < 1 or ns.requests > 1000 or ns.repeats > 20:
        parser.error("--requests 1..1000, --max-tokens >= 1, --repeats 1..20")
    anyio.run(main, ns)
