"""Benchmark 2: aloesim's actor pipeline against the sequential approach.

The published pipeline grows one conversation after another, one call at a
time: user, inducer, preferred, rejected, judge, in sequence. This script
makes exactly those calls, through the same roles, gateway and SQLite
recording, for a subset of the personas, and extrapolates seconds per
conversation; then it grows all the trees with ``aloe generate``'s pipeline
(``generation.preference_check=true``, so the judge calls are made there
too) on the same latency server, and reports the speedup.

    python benchmarks/sequential_baseline.py                        # 100 trees x 10 turns, 250 ms, subset 2
    python benchmarks/sequential_baseline.py --trees 20 --turns 3 --latency 0.1 --subset 1
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Meter, latency_server, run_benchmark
from pipeline_overhead import add_personas, generate_config, load, run_pipeline

__all__ = ["sequential"]

JUDGE = ("generation.preference_check=true",)


async def sequential(base_url: str, conversations: int, turns: int) -> dict[str, Any]:
    """Grow ``conversations`` conversations one after another, one call at a
    time (user, inducer, preferred, rejected, judge), through aloesim's roles
    and gateway with call recording on; the continued reply is the preferred one."""
    from aloesim.agents import TreeRoles, make_roles, model_pool
    from aloesim.environment import Persona
    from aloesim.environment.store import Personas, Store

    roles_needed = ("user", "inducer", "preferred", "rejected", "preference_judge")
    calls = 0
    with tempfile.TemporaryDirectory(prefix="aloe-seq-") as tmp:
        db = Path(tmp) / "seq.db"
        add_personas(db, conversations)
        cfg = generate_config(db, [base_url], conversations, turns, 1, extra=JUDGE)
        async with Store.open(db) as store:
            personas: list[Persona] = await store.read(lambda c: Personas(c).personas())
            async with model_pool(cfg, store) as pool:
                roles = TreeRoles.from_roles(make_roles(cfg, {r: await pool.for_role(cfg, r) for r in roles_needed}))
                assert roles.preference_judge is not None
                with Meter() as meter:
                    for persona in personas:
                        convo: list[dict[str, str]] = []
                        for _ in range(turns):
                            message = await roles.user(persona, convo)
                            seen = [*convo, {"role": "user", "content": message}]
                            inferred = await roles.inducer(persona, seen)
                            preferred = await roles.preferred(convo, message, inferred)
                            rejected = await roles.rejected(convo, message)
                            await roles.preference_judge(persona, convo, message, preferred, rejected)
                            calls += 6  # the judge asks in both orders
                            convo = [*seen, {"role": "assistant", "content": preferred}]
        conn = sqlite3.connect(db)  # after the store closed: every submitted record is committed
        recorded = conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
        conn.close()
    return {"conversations": conversations, "turns": turns, "llm_calls": calls, "recorded_calls": recorded,
            "wall_s": round(meter.wall_s, 3), "s_per_conversation": round(meter.wall_s / conversations, 3),
            "cpu_ms_per_call": round(1000 * meter.cpu_s / calls, 3)}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    with latency_server(args.latency) as server:
        seq = await sequential(server.base_url, args.subset, args.turns)
        print(f"sequential: {args.subset} conversation(s) x {args.turns} turns in {seq['wall_s']:.1f} s = "
              f"{seq['s_per_conversation']:.2f} s per conversation ({seq['llm_calls']} calls)", flush=True)
        pipe = await run_pipeline(server.base_url, args.trees, args.turns, args.concurrency, extra=JUDGE)
    extrapolated = seq["s_per_conversation"] * args.trees
    speedup = extrapolated / pipe["wall_s"]
    print(f"pipeline:   {args.trees} trees x {args.turns} turns in {pipe['wall_s']:.1f} s "
          f"({pipe['llm_calls']} calls); sequential extrapolated: {extrapolated:.0f} s; speedup {speedup:.1f}x",
          flush=True)
    return {
        "latency_s": args.latency, "trees": args.trees, "turns": args.turns, "subset": args.subset,
        "sequential": seq, "pipeline": pipe,
        "sequential_extrapolated_s": round(extrapolated, 1), "speedup": round(speedup, 2),
        "load_average": load(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The actor pipeline against one-call-at-a-time generation.")
    p.add_argument("--trees", type=int, default=100, help="trees grown by the pipeline (default 100)")
    p.add_argument("--turns", type=int, default=10, help="turns per conversation (default 10)")
    p.add_argument("--latency", type=float, default=0.25, help="server latency, s (default 0.25)")
    p.add_argument("--subset", type=int, default=2, help="conversations grown sequentially (default 2)")
    p.add_argument("--concurrency", type=int, default=256, help="pipeline requests in flight (default 256)")
    p.add_argument("--name", default="sequential_baseline", help="results file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    return run_benchmark(_main, args)


if __name__ == "__main__":
    sys.exit(main())
