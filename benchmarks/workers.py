"""Benchmark: calls per second with ``generation.workers`` = 1, 2, 4 (every core of one machine).

The full ``aloe generate`` pipeline (``generate(cfg)``, the command's own code)
grows T trees x K turns against the latency server (50 ms), which runs in its
own process; each worker process has the same per-process concurrency C, so
every worker is limited by its own CPU, not by the server's latency. For each
worker count: LLM calls per second over the growing (first call to last tree
finished, from the database: worker start-up excluded) and over the whole
command (start-up included), the server's CPU per request and its share of a
core (from its ``/stats``), so the server is seen not to be the bottleneck.
The machine's core count and load averages are recorded: on a shared machine,
others' work lowers every figure, the 2- and 4-worker ones most.

    python benchmarks/workers.py                          # workers 1,2,4; 600 trees x 3 turns; C = 64
    python benchmarks/workers.py --workers 1,2 --trees 300 --turns 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import latency_server, raise_fd_limit, write_results
from pipeline_overhead import load, run_pipeline


async def measure(workers: list[int], trees: int, turns: int, concurrency: int, latency: float,
                  rounds: int) -> list[dict[str, Any]]:
    points = []
    with latency_server(latency) as server:
        for r in range(rounds):
            for w in workers:
                before = server.stats()
                run = await run_pipeline(server.base_url, trees, turns, concurrency,
                                         extra=(f"generation.workers={w}",))
                after = server.stats()
                served = after["requests"] - before["requests"]
                server_cpu = after["cpu_s"] - before["cpu_s"]
                growing_cps = round(run["llm_calls"] / run["growing_s"], 1) if run["growing_s"] else None
                point = {
                    "workers": w, "round": r, "trees": trees, "turns": turns, "concurrency_per_worker": concurrency,
                    "llm_calls": run["llm_calls"], "trees_complete": run["trees_complete"],
                    "growing_s": run["growing_s"], "wall_s": run["wall_s"],
                    "calls_per_s_growing": growing_cps, "calls_per_s_wall": run["calls_per_s"],
                    "server_requests": served, "server_cpu_ms_per_request": round(1000 * server_cpu / max(served, 1), 3),
                    "server_core_share": round(server_cpu / run["wall_s"], 3), "load_average": load(),
                }
                points.append(point)
                print(f"workers={w}: {growing_cps} calls/s growing, {run['calls_per_s']} calls/s whole command "
                      f"({run['llm_calls']} calls, {run['wall_s']:.1f} s); server {point['server_cpu_ms_per_request']}"
                      f" ms CPU/request, {point['server_core_share']:.2f} of a core; load {point['load_average']}",
                      flush=True)
    return points


def summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The best round of each worker count, and its ratio to one worker's best."""
    best: dict[int, dict[str, Any]] = {}
    for p in points:
        if p["workers"] not in best or (p["calls_per_s_growing"] or 0) > (best[p["workers"]]["calls_per_s_growing"] or 0):
            best[p["workers"]] = p
    one = best.get(1)
    out = {}
    for w, p in sorted(best.items()):
        out[str(w)] = {
            "calls_per_s_growing": p["calls_per_s_growing"], "calls_per_s_wall": p["calls_per_s_wall"],
            "speedup_growing": round(p["calls_per_s_growing"] / one["calls_per_s_growing"], 3) if one else None,
            "speedup_wall": round(p["calls_per_s_wall"] / one["calls_per_s_wall"], 3) if one else None,
            "server_core_share": p["server_core_share"], "load_average": p["load_average"],
        }
    return out


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    start = load()
    points = await measure(args.workers, args.trees, args.turns, args.concurrency, args.latency, args.rounds)
    result = {"cores": len(os.sched_getaffinity(0)), "latency_s": args.latency, "load_average_at_start": start,
              "target_speedup_2_workers": 1.7, "summary": summary(points), "points": points,
              "load_average_at_end": load()}
    for w, s in result["summary"].items():
        print(f"workers={w}: best {s['calls_per_s_growing']} calls/s growing (x{s['speedup_growing']} of one), "
              f"{s['calls_per_s_wall']} calls/s whole command (x{s['speedup_wall']})", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Calls per second with 1, 2 and 4 worker processes.")
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2, 4],
                   help="comma list of worker counts (default 1,2,4)")
    p.add_argument("--trees", type=int, default=600, help="trees per run (default 600)")
    p.add_argument("--turns", type=int, default=3, help="turns per tree (default 3)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight per worker process (default 64)")
    p.add_argument("--latency", type=float, default=0.05, help="server latency, s (default 0.05)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each worker count, interleaved (default 2)")
    p.add_argument("--name", default="workers", help="results file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    raise_fd_limit()
    results = anyio.run(_main, args)
    print(f"wrote {write_results(args.name, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
