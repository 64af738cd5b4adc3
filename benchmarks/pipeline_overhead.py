"""Benchmark 1: what aloesim's orchestration costs on top of the model calls.

Both regimes run the full ``aloe generate`` pipeline in this process (the
command's own ``generate(cfg)``: Hydra config, tree environment, four role
actors on the event bus, the gateway, SQLite recording of every call, event
and node) against the latency server (``benchmarks/latency_server.py``):

* latency-bound (``--regime latency``): T trees x K turns at 2 s latency.
  Ideal wall time = K x 3 sequential hops x latency (user, then inducer ->
  preferred; the rejected reply is made beside the inducer). Reported:
  wall / ideal (target <= 1.05).
* throughput-bound (``--regime throughput``): T trees x K turns at 50 ms
  latency, where the client's CPU is the limit. The bare ``AsyncOpenAI``
  loop (``bare_loop.py``) is measured in the same run, on the same server
  and at the same concurrency, before and after the pipeline; reported:
  pipeline calls/s / bare calls/s (target >= 0.9) and client CPU ms per
  call for both. The bare loop uses one client, as the issue's baseline;
  a last bare run with the gateway's layout (one client per 8 connections)
  is reported beside it.

    python benchmarks/pipeline_overhead.py                      # both regimes, the issue's sizes
    python benchmarks/pipeline_overhead.py --regime latency --trees 20 --turns 3
    python benchmarks/pipeline_overhead.py --regime throughput --trees 200 --turns 5 --concurrency 64

``run_pipeline`` is shared with the other pipeline benchmarks (sequential
baseline, scaling curve, backend saturation).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Meter, current_rss_mb, latency_server, peak_rss_mb, run_benchmark
from bare_loop import bare_loop

from aloesim.agents.gateway._backend import POOL_PER_CLIENT

__all__ = ["HOPS_PER_TURN", "add_personas", "generate_config", "load", "run_pipeline"]

HOPS_PER_TURN = 3  # user, then inducer -> preferred (rejected runs beside the inducer)
ROLES = ("user", "inducer", "preferred", "rejected", "preference_judge")


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (others' work on a shared machine skews the figures)."""
    return [round(x, 2) for x in os.getloadavg()]


def add_personas(db: Path, n: int, *, split: str = "train") -> None:
    """``n`` distinct personas written straight into the database (no embedding
    model: the benchmark measures tree growing, not persona pairing)."""
    from aloesim.environment.store import connect

    conn = connect(db, create=True)
    try:
        conn.execute("BEGIN")
        for i in range(n):
            profile = (f"I am person number {i}. I live in city {i % 97} and work as a "
                       f"{('teacher', 'nurse', 'welder', 'chef', 'pilot')[i % 5]}; I have {i % 4} children.")
            personality = f"Trait set {i}: {('curious', 'calm', 'blunt', 'warm', 'shy')[i % 5]} and detail-minded."
            a = conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                             " VALUES ('profile', ?, ?, 'seed', 0)", (split, profile)).lastrowid
            b = conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                             " VALUES ('personality', ?, ?, 'seed', 0)", (split, personality)).lastrowid
            conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at) VALUES (?,?,?,0)",
                         (a, b, split))
        conn.execute("COMMIT")
    finally:
        conn.close()


def generate_config(db: Path, base_urls: list[str], trees: int, turns: int, concurrency: int, *,
                    in_flight: int | None = None, role_concurrency: int | None = None, cache: bool = True,
                    dialect: str = "openai", model: str = "latency-server", timeout: float = 120.0,
                    backend: str = "openai", extra: tuple[str, ...] = (), workers: int = 1) -> Any:
    """The ``aloe generate`` config of a benchmark run: the ``backend`` preset
    (default openai) at the given URL(s), ``concurrency`` requests in flight per endpoint, every role
    actor allowed ``role_concurrency`` (default: ``concurrency`` x endpoints),
    ``in_flight`` trees at once (default: all), ``workers`` processes (default 1:
    these benchmarks measure what one process does)."""
    from aloesim.orchestration._config import compose_config

    role_conc = role_concurrency or concurrency * len(base_urls)
    urls = "[" + ",".join(base_urls) + "]"
    overrides = [
        f"db={db}", f"cache={str(cache).lower()}", "log.level=WARNING", "generation.progress=off", f"generation.workers={workers}",
        f"generation.trees={trees}", f"generation.turns={turns}",
        f"generation.max_trees_in_flight={in_flight or trees}",
        f"backend={backend}", f"++backend.base_urls={urls}", "++backend.api_key_env=null", f"backend.dialect={dialect}",
        f"backend.model={model}", f"backend.concurrency={concurrency}", f"backend.timeout={timeout}",
        *(f"agents.{r}.concurrency={role_conc}" for r in ROLES), *extra,
    ]
    return compose_config("generate", overrides)


async def run_pipeline(base_urls: str | list[str], trees: int, turns: int, concurrency: int, *,
                       db: Path | None = None, in_flight: int | None = None, role_concurrency: int | None = None,
                       cache: bool = True, dialect: str = "openai", model: str = "latency-server",
                       timeout: float = 120.0, backend: str = "openai", extra: tuple[str, ...] = (),
                       sample_rss: bool = False, workers: int = 1) -> dict[str, Any]:
    """Grow ``trees`` x ``turns`` with ``aloe generate``'s own ``generate(cfg)``
    against ``base_urls``; returns wall time, calls, calls/s, client CPU per
    call, nodes and (with ``sample_rss``) the peak RSS sampled while it ran."""
    from aloesim.orchestration._logging import configure_logging
    from aloesim.orchestration.commands.generate import generate

    configure_logging("WARNING", "json")
    urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
    with tempfile.TemporaryDirectory(prefix="aloe-bench-") as tmp:
        path = db or Path(tmp) / "bench.db"
        add_personas(path, trees)
        cfg = generate_config(path, urls, trees, turns, concurrency, in_flight=in_flight,
                              role_concurrency=role_concurrency, cache=cache, dialect=dialect, model=model,
                              timeout=timeout, backend=backend, extra=extra, workers=workers)
        rss = {"peak_mb": current_rss_mb(), "start_mb": current_rss_mb()}

        async def sampler() -> None:
            while True:
                rss["peak_mb"] = max(rss["peak_mb"], current_rss_mb())
                await anyio.sleep(0.5)

        with Meter() as meter:
            async with anyio.create_task_group() as tg:
                if sample_rss:
                    tg.start_soon(sampler)
                stats = await generate(cfg)
                tg.cancel_scope.cancel()
        conn = sqlite3.connect(path)
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        by_role = dict(conn.execute("SELECT role, COUNT(*) FROM llm_calls GROUP BY role").fetchall())
        # from the first call's start to the last tree's completion: the growing, without start-up and summary
        first, last = conn.execute("SELECT (SELECT MIN(created_at - latency_s) FROM llm_calls),"
                                   " (SELECT MAX(finished_at) FROM trees)").fetchone()
        conn.close()
    calls = stats["llm_calls"]
    out = {
        "trees": trees, "turns": turns, "concurrency": concurrency, "endpoints": len(urls),
        "max_trees_in_flight": in_flight or trees, "cache": cache,
        "trees_complete": stats["trees_complete"], "trees_failed": stats["trees_failed"], "nodes": stats["nodes"],
        "llm_calls": calls, "calls_by_role": by_role, "events": events, "retries": stats["retries"],
        "call_failures": stats["call_failures"], "completion_tokens": stats["completion_tokens"],
        "wall_s": round(meter.wall_s, 3), "growing_s": round(last - first, 3) if first and last else None,
        "calls_per_s": round(calls / meter.wall_s, 1),
        "trees_per_min": round(60 * stats["trees_complete"] / meter.wall_s, 1),
        "cpu_s": round(meter.cpu_s, 3), "cpu_ms_per_call": round(1000 * meter.cpu_s / max(calls, 1), 3),
        "load_average": load(),
    }
    if sample_rss:
        out["rss_start_mb"] = round(rss["start_mb"], 1)
        out["rss_peak_sampled_mb"] = round(rss["peak_mb"], 1)
        out["rss_peak_process_mb"] = round(peak_rss_mb(), 1)
    return out


# -- the two regimes ------------------------------------------------------------

async def latency_regime(trees: int, turns: int, latency: float, concurrency: int) -> dict[str, Any]:
    with latency_server(latency) as server:
        run = await run_pipeline(server.base_url, trees, turns, concurrency)
        served = server.stats()
    ideal = turns * HOPS_PER_TURN * latency
    result = {
        **run, "latency_s": latency, "hops_per_turn": HOPS_PER_TURN, "ideal_s": ideal,
        "wall_over_ideal": round(run["wall_s"] / ideal, 4), "target_wall_over_ideal": 1.05,
        "growing_over_ideal": round(run["growing_s"] / ideal, 4) if run["growing_s"] else None,
        "server_peak_in_flight": served.get("peak_in_flight"),
    }
    print(f"latency-bound  {trees} trees x {turns} turns at {latency} s: wall {run['wall_s']:.2f} s, ideal "
          f"{ideal:.1f} s, wall/ideal {result['wall_over_ideal']:.3f} (target <= 1.05; first call to last tree "
          f"{result['growing_over_ideal']:.3f}); {run['llm_calls']} calls, "
          f"{run['trees_complete']} trees complete; load {run['load_average']}", flush=True)
    return result


async def throughput_regime(trees: int, turns: int, latency: float, concurrency: int, bare_calls: int,
                            rounds: int) -> dict[str, Any]:
    """Bare loop and pipeline alternate ``rounds`` times (bare, pipeline, ...,
    bare) on one server: the ratio compares neighbours under the same load."""
    bares, pipes = [], []
    with latency_server(latency) as server:
        for r in range(rounds):
            bares.append(await bare_loop(server.base_url, bare_calls, concurrency))
            bares[-1]["load_average"] = load()
            print(f"  bare loop     C={concurrency}: {bares[-1]['calls_per_s']:7.1f} calls/s "
                  f"{bares[-1]['cpu_ms_per_call']:.2f} ms CPU/call  load {bares[-1]['load_average']}", flush=True)
            pipes.append(await run_pipeline(server.base_url, trees, turns, concurrency))
            print(f"  pipeline      C={concurrency}: {pipes[-1]['calls_per_s']:7.1f} calls/s "
                  f"{pipes[-1]['cpu_ms_per_call']:.2f} ms CPU/call  load {pipes[-1]['load_average']}  "
                  f"({pipes[-1]['llm_calls']} calls, {pipes[-1]['wall_s']:.1f} s)", flush=True)
        bares.append(await bare_loop(server.base_url, bare_calls, concurrency))
        bares[-1]["load_average"] = load()
        print(f"  bare loop     C={concurrency}: {bares[-1]['calls_per_s']:7.1f} calls/s "
              f"{bares[-1]['cpu_ms_per_call']:.2f} ms CPU/call  load {bares[-1]['load_average']}", flush=True)
        # the bare loop again with the gateway's client layout (one client per POOL_PER_CLIENT connections)
        layout = await bare_loop(server.base_url, bare_calls, concurrency, clients=-(-concurrency // POOL_PER_CLIENT))
        layout["load_average"] = load()
        print(f"  bare loop, {layout['clients']} clients: {layout['calls_per_s']:7.1f} calls/s "
              f"{layout['cpu_ms_per_call']:.2f} ms CPU/call  load {layout['load_average']}", flush=True)
    # each pipeline run against the mean of the bare runs just before and after it
    ratios = [p["calls_per_s"] / ((bares[i]["calls_per_s"] + bares[i + 1]["calls_per_s"]) / 2)
              for i, p in enumerate(pipes)]
    cpu_ratios = [p["cpu_ms_per_call"] / ((bares[i]["cpu_ms_per_call"] + bares[i + 1]["cpu_ms_per_call"]) / 2)
                  for i, p in enumerate(pipes)]
    bare_cps = sum(b["calls_per_s"] for b in bares) / len(bares)
    pipe_cps = sum(p["calls_per_s"] for p in pipes) / len(pipes)
    result = {
        "trees": trees, "turns": turns, "latency_s": latency, "concurrency": concurrency,
        "bare_calls_per_run": bare_calls, "rounds": rounds,
        "bare_calls_per_s": round(bare_cps, 1), "pipeline_calls_per_s": round(pipe_cps, 1),
        "ratio_pipeline_over_bare": round(sum(ratios) / len(ratios), 3),
        "ratios_per_round": [round(x, 3) for x in ratios], "target_ratio": 0.9,
        "bare_cpu_ms_per_call": round(sum(b["cpu_ms_per_call"] for b in bares) / len(bares), 3),
        "pipeline_cpu_ms_per_call": round(sum(p["cpu_ms_per_call"] for p in pipes) / len(pipes), 3),
        "cpu_per_call_ratio_pipeline_over_bare": round(sum(cpu_ratios) / len(cpu_ratios), 3),
        "bare_runs": bares, "pipeline_runs": pipes,
        "bare_gateway_layout": layout,
        "ratio_pipeline_over_bare_gateway_layout": round(pipe_cps / layout["calls_per_s"], 3),
    }
    print(f"throughput-bound {trees} trees x {turns} turns at {latency * 1000:.0f} ms, C={concurrency}: pipeline "
          f"{pipe_cps:.1f} calls/s vs bare {bare_cps:.1f} calls/s = {result['ratio_pipeline_over_bare']:.3f} "
          f"(target >= 0.9); CPU/call {result['pipeline_cpu_ms_per_call']:.2f} ms vs "
          f"{result['bare_cpu_ms_per_call']:.2f} ms", flush=True)
    return result


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"load_average_at_start": load()}
    if args.regime in ("latency", "both"):
        results["latency_bound"] = await latency_regime(args.latency_trees, args.latency_turns, args.slow,
                                                        args.latency_concurrency)
    if args.regime in ("throughput", "both"):
        results["throughput_bound"] = await throughput_regime(args.trees, args.turns, args.fast, args.concurrency,
                                                              args.bare_calls, args.rounds)
    results["load_average_at_end"] = load()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Orchestration overhead: latency-bound and throughput-bound regimes.")
    p.add_argument("--regime", choices=["latency", "throughput", "both"], default="both")
    p.add_argument("--latency-trees", type=int, default=100, help="trees of the latency-bound regime (default 100)")
    p.add_argument("--latency-turns", type=int, default=10, help="turns of the latency-bound regime (default 10)")
    p.add_argument("--slow", type=float, default=2.0, help="latency of the latency-bound regime, s (default 2)")
    p.add_argument("--latency-concurrency", type=int, default=256,
                   help="requests in flight allowed in the latency-bound regime (default 256: never the limit)")
    p.add_argument("--trees", type=int, default=1000, help="trees of the throughput-bound regime (default 1000)")
    p.add_argument("--turns", type=int, default=10, help="turns of the throughput-bound regime (default 10)")
    p.add_argument("--fast", type=float, default=0.05, help="latency of the throughput-bound regime, s (default 0.05)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight, pipeline and bare loop (default 64)")
    p.add_argument("--bare-calls", type=int, default=4000, help="calls per bare-loop run (default 4000)")
    p.add_argument("--rounds", type=int, default=1, help="pipeline runs, each between two bare runs (default 1)")
    p.add_argument("--name", default="pipeline_overhead", help="results file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    return run_benchmark(_main, args)


if __name__ == "__main__":
    sys.exit(main())
