"""Benchmark: calls per second with ``generation.workers`` = 1, 2, 4 (every core of one machine).

The full ``aloe generate`` pipeline (``generate(cfg)``, the command's own code)
grows T trees x K turns against the latency server (50 ms), which runs in its
own process; each worker process has the same per-process concurrency C, so
every worker is limited by its own CPU, not by the server's latency. For each
worker count: LLM calls per second over the growing (first call to last tree
finished, from the database: worker start-up excluded) and over the whole
command (start-up included), the client's CPU per call and the cores it used
(this process and every process it started, with psutil), the server's CPU per request and its share of a
core (from its ``/stats``), so the server is seen not to be the bottleneck.
The machine's core count and load averages are recorded: on a shared machine,
others' work lowers every figure, the 2- and 4-worker ones most.

    python benchmarks/workers.py                          # workers 1,2,4; 600 trees x 3 turns; C = 64
    python benchmarks/workers.py --workers 1,2 --trees 300 --turns 2
    python benchmarks/workers.py --workers 1 --ray-shards 2 --name workers_ray   # engine=ray, local Ray
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


class TreeCPU:
    """CPU seconds of this process and every process it started (workers and
    their forkserver) except the server (``skip``), sampled every 0.2 s: a
    worker's last sample before it exits counts (up to 0.2 s of its CPU may be missed)."""

    def __init__(self, skip: int) -> None:
        import psutil

        self.me = psutil.Process()
        self.skip = skip
        self.seen: dict[int, float] = {}

    def sample(self) -> None:
        import psutil

        for proc in self.me.children(recursive=True):
            if proc.pid == self.skip:
                continue
            try:
                t = proc.cpu_times()
                self.seen[proc.pid] = t.user + t.system
            except psutil.Error:
                continue

    def total(self) -> float:
        t = self.me.cpu_times()
        return t.user + t.system + sum(self.seen.values())


async def sample_every(cpu: TreeCPU, interval: float) -> None:
    while True:
        cpu.sample()
        await anyio.sleep(interval)


async def measure(workers: list[int], trees: int, turns: int, concurrency: int, latency: float,
                  rounds: int, ray_shards: int = 0) -> list[dict[str, Any]]:
    points = []
    runs = [("local", w) for w in workers] + ([("ray", ray_shards)] if ray_shards else [])
    with latency_server(latency) as server:
        for r in range(rounds):
            for engine, w in runs:
                before = server.stats()
                cpu = TreeCPU(skip=server.process.pid)
                start_cpu = cpu.total()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sample_every, cpu, 0.2)
                    run = await run_pipeline(server.base_url, trees, turns, concurrency, workers=w,
                                             extra=(f"generation.engine={engine}",))
                    tg.cancel_scope.cancel()
                client_cpu = cpu.total() - start_cpu
                after = server.stats()
                served = after["requests"] - before["requests"]
                server_cpu = after["cpu_s"] - before["cpu_s"]
                growing_cps = round(run["llm_calls"] / run["growing_s"], 1) if run["growing_s"] else None
                point = {
                    "engine": engine, "workers": w, "round": r, "trees": trees, "turns": turns, "concurrency_per_worker": concurrency,
                    "llm_calls": run["llm_calls"], "trees_complete": run["trees_complete"],
                    "growing_s": run["growing_s"], "wall_s": run["wall_s"],
                    "calls_per_s_growing": growing_cps, "calls_per_s_wall": run["calls_per_s"],
                    "server_requests": served, "server_cpu_ms_per_request": round(1000 * server_cpu / max(served, 1), 3),
                    "server_core_share": round(server_cpu / run["wall_s"], 3), "load_average": load(),
                    "client_cpu_ms_per_call": round(1000 * client_cpu / max(run["llm_calls"], 1), 3),
                    "client_cores_used": round(client_cpu / run["wall_s"], 2),
                }
                points.append(point)
                print(f"{engine} workers={w}: {growing_cps} calls/s growing, {run['calls_per_s']} calls/s whole command "
                      f"({run['llm_calls']} calls, {run['wall_s']:.1f} s); server {point['server_cpu_ms_per_request']}"
                      f" ms CPU/request, {point['server_core_share']:.2f} of a core; client {point['client_cpu_ms_per_call']} ms CPU/call"
                      f" on {point['client_cores_used']} cores; load {point['load_average']}",
                      flush=True)
    return points


def summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The best round of each worker count, and its ratio to one worker's best."""
    best: dict[str, dict[str, Any]] = {}
    for p in points:
        key = str(p["workers"]) if p["engine"] == "local" else f"ray:{p['workers']}"
        if key not in best or (p["calls_per_s_growing"] or 0) > (best[key]["calls_per_s_growing"] or 0):
            best[key] = p
    one = best.get("1")
    out = {}
    for key, p in best.items():
        out[key] = {
            "calls_per_s_growing": p["calls_per_s_growing"], "calls_per_s_wall": p["calls_per_s_wall"],
            "speedup_growing": round(p["calls_per_s_growing"] / one["calls_per_s_growing"], 3) if one else None,
            "speedup_wall": round(p["calls_per_s_wall"] / one["calls_per_s_wall"], 3) if one else None,
            "server_core_share": p["server_core_share"], "client_cpu_ms_per_call": p["client_cpu_ms_per_call"],
            "client_cores_used": p["client_cores_used"], "load_average": p["load_average"],
        }
    return out


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    start = load()
    points = await measure(args.workers, args.trees, args.turns, args.concurrency, args.latency, args.rounds,
                           args.ray_shards)
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
    p.add_argument("--ray-shards", type=int, default=0,
                   help="also run generation.engine=ray with this many shards on a local Ray (0 = skip; needs ray)")
    p.add_argument("--name", default="workers", help="results file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    raise_fd_limit()
    results = anyio.run(_main, args)
    print(f"wrote {write_results(args.name, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
