"""Benchmark 4: does the pipeline keep the embedded llama.cpp server(s) busy?

For 1 and then 2 llama.cpp server processes (SmolLM2-135M-Instruct, the
embedded default; with 2 the gateway routes by least outstanding requests):

1. ``story``: the server's decoding maximum, saturating it directly with a bare
   ``AsyncOpenAI`` loop (``--per-server`` requests in flight, long-story prompts that
   always use all ``max_tokens``): output tokens per second;
2. ``pipeline``: ``aloe generate`` grows T trees x K turns on those servers
   (the embedded preset: 1 request in flight per server, structured inducer
   output in the llama.cpp dialect); output tokens per second over its wall time;
3. ``replay``: the very requests the pipeline made (read back from
   ``llm_calls``), sent straight to freshly started servers by a bare loop that
   keeps ``--per-server`` requests in flight, with no dependencies between them: the
   server's maximum on the pipeline's own workload (same prompts, same
   lengths). Fresh servers, so the replay gets no help from the prompt cache
   the pipeline warmed.

Reported: pipeline / replay (target >= 0.9) and pipeline / story.

    python benchmarks/backend_saturation.py                          # 4 trees x 2 turns, 1 and 2 servers
    python benchmarks/backend_saturation.py --servers 1 --trees 2 --turns 1
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from openai import AsyncOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_benchmark
from pipeline_overhead import load, run_pipeline

MODEL = "SmolLM2-135M-Instruct"


async def saturate(urls: list[str], requests: list[dict[str, Any]], per_server: int) -> dict[str, Any]:
    """Send ``requests`` (chat completion kwargs) with ``per_server`` in flight on
    each server; output tokens per second over the whole."""
    clients = [AsyncOpenAI(base_url=u, api_key="unused", max_retries=0, timeout=600) for u in urls]
    queue = list(reversed(requests))
    tokens = [0, 0]  # completion, prompt
    errors = 0

    async def worker(client: AsyncOpenAI) -> None:
        nonlocal errors
        while queue:
            kwargs = queue.pop()
            try:
                reply = await client.chat.completions.create(**kwargs)
            except Exception:  # noqa: BLE001 - counted
                errors += 1
                continue
            if reply.usage:
                tokens[0] += reply.usage.completion_tokens
                tokens[1] += reply.usage.prompt_tokens

    start = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            for client in clients:
                for _ in range(per_server):
                    tg.start_soon(worker, client)
    finally:
        for client in clients:
            await client.close()
    wall = time.perf_counter() - start
    return {"requests": len(requests), "errors": errors, "in_flight_per_server": per_server,
            "completion_tokens": tokens[0], "prompt_tokens": tokens[1], "wall_s": round(wall, 2),
            "output_tokens_per_s": round(tokens[0] / wall, 2)}


def stories(n: int, max_tokens: int) -> list[dict[str, Any]]:
    return [{"model": MODEL, "messages": [{"role": "user", "content": f"Write a long story about a cat named Tom{i}."}],
             "max_tokens": max_tokens, "temperature": 0.8, "seed": i} for i in range(n)]


def recorded_requests(db: Path) -> list[dict[str, Any]]:
    """The pipeline's successful calls, as chat completion kwargs (llama.cpp dialect)."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT request FROM llm_calls WHERE error IS NULL AND cached = 0 ORDER BY id").fetchall()
    conn.close()
    out = []
    for (text,) in rows:
        req = json.loads(text)
        schema = req.pop("schema", None)
        if schema is not None:
            req["response_format"] = {"type": "json_object", "schema": schema}
        out.append(req)
    return out


async def one_setup(servers: int, trees: int, turns: int, story_requests: int, story_tokens: int,
                    max_tokens: int, per_server: int) -> dict[str, Any]:
    from aloesim.agents.servers import embedded_servers

    caps = tuple(f"agents.{r}.max_tokens={max_tokens if r != 'inducer' else 2 * max_tokens}"
                 for r in ("user", "inducer", "preferred", "rejected"))
    with tempfile.TemporaryDirectory(prefix="aloe-sat-") as tmp:
        db = Path(tmp) / "pipe.db"
        async with embedded_servers(n=servers) as urls:
            await saturate(urls, stories(servers, 4), 1)  # warm-up: model pages in
            story = await saturate(urls, stories(story_requests * servers, story_tokens), per_server)
            print(f"  {servers} server(s) story max:    {story['output_tokens_per_s']:6.1f} output tokens/s", flush=True)
            pipe = await run_pipeline(urls, trees, turns, 1, db=db, backend="embedded", dialect="llamacpp",
                                      model=MODEL, timeout=600.0, role_concurrency=servers * 2, extra=caps)
            pipe["output_tokens_per_s"] = round(pipe["completion_tokens"] / pipe["wall_s"], 2)
            print(f"  {servers} server(s) pipeline:     {pipe['output_tokens_per_s']:6.1f} output tokens/s "
                  f"({pipe['llm_calls']} calls, {pipe['wall_s']:.0f} s, {pipe['trees_complete']}/{trees} trees)",
                  flush=True)
        requests = recorded_requests(db)
        async with embedded_servers(n=servers) as urls:  # fresh: no prompt cache from the pipeline
            await saturate(urls, stories(servers, 4), 1)
            replay = await saturate(urls, requests, per_server)
        print(f"  {servers} server(s) replay max:   {replay['output_tokens_per_s']:6.1f} output tokens/s "
              f"({replay['requests']} requests)", flush=True)
    return {
        "servers": servers, "story": story, "pipeline": pipe, "replay": replay,
        "pipeline_over_replay": round(pipe["output_tokens_per_s"] / replay["output_tokens_per_s"], 3),
        "pipeline_over_story": round(pipe["output_tokens_per_s"] / story["output_tokens_per_s"], 3),
        "target": 0.9, "load_average": load(),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"trees": args.trees, "turns": args.turns, "max_tokens": args.max_tokens,
                               "load_average_at_start": load(), "setups": []}
    for n in args.servers:
        print(f"{n} llama.cpp server(s):", flush=True)
        setup = await one_setup(n, args.trees, args.turns, args.story_requests, args.story_tokens, args.max_tokens,
                                args.per_server)
        results["setups"].append(setup)
        print(f"  pipeline / replay = {setup['pipeline_over_replay']:.3f} (target >= 0.9); pipeline / story = "
              f"{setup['pipeline_over_story']:.3f}", flush=True)
    results["load_average_at_end"] = load()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Embedded llama.cpp server(s): direct maximum vs the pipeline.")
    p.add_argument("--servers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                   help="comma list of server counts (default 1,2)")
    p.add_argument("--trees", type=int, default=4, help="trees grown by the pipeline (default 4)")
    p.add_argument("--turns", type=int, default=2, help="turns per tree (default 2)")
    p.add_argument("--max-tokens", type=int, default=64,
                   help="max_tokens of user, preferred and rejected; the inducer gets twice (default 64)")
    p.add_argument("--story-requests", type=int, default=4, help="long-story requests per server (default 4)")
    p.add_argument("--story-tokens", type=int, default=64, help="max_tokens of a long-story request (default 64)")
    p.add_argument("--per-server", type=int, default=1,
                   help="requests in flight per server when saturating directly (default 1: llama-cpp-python decodes "
                        "one sequence at a time, and a second queued request only evicts the first one's KV cache)")
    p.add_argument("--name", default="backend_saturation", help="results file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    return run_benchmark(_main, args)


if __name__ == "__main__":
    sys.exit(main())
