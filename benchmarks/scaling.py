"""Benchmark 3: the scaling curve and memory at 10,000 trees in flight.

For each concurrency C (requests in flight allowed: ``backend.concurrency`` and
every ``agents.<role>.concurrency``) the full ``aloe generate`` pipeline grows
max(8, C) trees against the latency server (50 ms), and the bare
``AsyncOpenAI`` loop makes calls at the same C with the gateway's client layout
(one client per 8 connections) right after it, on the same server: LLM calls
per second and trees per minute of the pipeline beside the bare loop's calls
per second, which is what the client can do at all at that C on this machine.

Then memory: 10,000 trees in flight at once (``generation.max_trees_in_flight``
10,000, C = 10,000) against a server that answers after 5 s, so that every
tree is started before the first finishes; the peak RSS of this process is
sampled while they grow.

    python benchmarks/scaling.py                                 # C = 1, 8, 64, 512, 4096; 10,000 trees
    python benchmarks/scaling.py --levels 1,8 --turns 1 --memory-trees 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import latency_server, peak_rss_mb, run_benchmark
from bare_loop import bare_loop
from pipeline_overhead import load, run_pipeline

from aloesim.agents.gateway._backend import POOL_PER_CLIENT  # the gateway's client layout


async def curve(levels: list[int], turns: int, latency: float, trees_min: int) -> list[dict[str, Any]]:
    points = []
    with latency_server(latency) as server:
        for c in levels:
            trees = max(trees_min, c)
            pipe = await run_pipeline(server.base_url, trees, turns, c)
            bare = await bare_loop(server.base_url, max(200, 2 * c), c, clients=-(-c // POOL_PER_CLIENT))
            point = {
                "concurrency": c, "trees": trees, "turns": turns,
                "pipeline_calls_per_s": pipe["calls_per_s"], "pipeline_trees_per_min": pipe["trees_per_min"],
                "pipeline_cpu_ms_per_call": pipe["cpu_ms_per_call"], "pipeline_wall_s": pipe["wall_s"],
                "bare_calls_per_s": bare["calls_per_s"], "bare_cpu_ms_per_call": bare["cpu_ms_per_call"],
                "bare_clients": bare["clients"],
                "ratio_pipeline_over_bare": round(pipe["calls_per_s"] / bare["calls_per_s"], 3),
                "ideal_calls_per_s_latency_only": round(c / latency, 1),
                "trees_complete": pipe["trees_complete"], "load_average": load(), "pipeline": pipe, "bare": bare,
            }
            points.append(point)
            print(f"C={c:5d}: pipeline {pipe['calls_per_s']:7.1f} calls/s {pipe['trees_per_min']:8.1f} trees/min "
                  f"({pipe['cpu_ms_per_call']:.2f} ms CPU/call) | bare {bare['calls_per_s']:7.1f} calls/s "
                  f"| latency-only ideal {c / latency:8.0f} calls/s | load {point['load_average']}", flush=True)
    return points


async def memory(trees: int, turns: int, latency: float) -> dict[str, Any]:
    with latency_server(latency) as server:
        run = await run_pipeline(server.base_url, trees, turns, trees, in_flight=trees, timeout=600.0,
                                 sample_rss=True)
        served = server.stats()
    out = {**run, "latency_s": latency, "server_peak_in_flight": served.get("peak_in_flight"),
           "target_rss_mb": 2048}
    print(f"{trees} trees in flight ({turns} turn(s), {latency} s latency): peak RSS {run['rss_peak_sampled_mb']:.0f} "
          f"MiB sampled, {run['rss_peak_process_mb']:.0f} MiB process peak (target < 2048); server peak in flight "
          f"{out['server_peak_in_flight']}; {run['trees_complete']} trees complete in {run['wall_s']:.0f} s", flush=True)
    return out


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"latency_s": args.latency, "load_average_at_start": load()}
    if args.levels:
        results["curve"] = await curve(args.levels, args.turns, args.latency, args.trees_min)
    if args.memory_trees:
        results["memory"] = await memory(args.memory_trees, args.memory_turns, args.memory_latency)
    results["process_peak_rss_mb"] = round(peak_rss_mb(), 1)
    results["load_average_at_end"] = load()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Throughput against concurrency; peak memory at 10,000 trees in flight.")
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 8, 64, 512, 4096],
                   help="comma list of concurrency levels (default 1,8,64,512,4096; empty = skip the curve)")
    p.add_argument("--turns", type=int, default=2, help="turns per tree on the curve (default 2)")
    p.add_argument("--trees-min", type=int, default=8, help="trees per point: max(this, C) (default 8)")
    p.add_argument("--latency", type=float, default=0.05, help="server latency on the curve, s (default 0.05)")
    p.add_argument("--memory-trees", type=int, default=10000, help="trees in flight of the memory run (0 = skip)")
    p.add_argument("--memory-turns", type=int, default=1, help="turns per tree of the memory run (default 1)")
    p.add_argument("--memory-latency", type=float, default=5.0, help="server latency of the memory run (default 5 s)")
    p.add_argument("--name", default="scaling", help="results file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    return run_benchmark(_main, args)


if __name__ == "__main__":
    sys.exit(main())
