"""Throughput of the embedded server(s) on this machine.

    python -m aloesim.agents.servers._bench [--servers N] [--concurrency 1,4,8] [--max-tokens 64]

Prints the startup time, then for each concurrency the completion tokens per
second summed over all requests (every request generates exactly
``max_tokens`` tokens: ``ignore_eos``-free prompts ask for long stories)."""

from __future__ import annotations

import argparse
import time

import anyio
from openai import AsyncOpenAI

from ._embedded import embedded_servers


async def _one(client: AsyncOpenAI, i: int, max_tokens: int) -> int:
    reply = await client.chat.completions.create(
        model="bench",
        messages=[{"role": "user", "content": f"Write a long story about a cat named Tom{i}."}],
        max_tokens=max_tokens,
        temperature=0.8,
        seed=i,
    )
    return reply.usage.completion_tokens if reply.usage else 0


async def _round(clients: list[AsyncOpenAI], concurrency: int, max_tokens: int) -> tuple[int, float]:
    tokens: list[int] = []

    async def worker(i: int) -> None:
        tokens.append(await _one(clients[i % len(clients)], i, max_tokens))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(concurrency):
            tg.start_soon(worker, i)
    return sum(tokens), time.perf_counter() - t0


async def _main(servers: int, levels: list[int], max_tokens: int, rounds: int) -> None:
    t0 = time.perf_counter()
    async with embedded_servers(n=servers) as urls:
        print(f"servers={servers} startup_s={time.perf_counter() - t0:.2f}")
        clients = [AsyncOpenAI(base_url=u, api_key="unused", max_retries=0) for u in urls]
        for client in clients:
            await _one(client, 0, 4)  # warm-up
        for level in levels:
            total, elapsed = 0, 0.0
            for _ in range(rounds):
                tok, dt = await _round(clients, level, max_tokens)
                total, elapsed = total + tok, elapsed + dt
            print(
                f"concurrency={level} completion_tokens={total} seconds={elapsed:.2f} tokens_per_s={total / elapsed:.1f}"
            )
        for client in clients:
            await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(
        _main, args.servers, [int(c) for c in args.concurrency.split(",")], args.max_tokens, args.rounds
    )


if __name__ == "__main__":
    main()
