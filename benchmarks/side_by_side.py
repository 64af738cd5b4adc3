"""Two checkouts side by side: the latency- and throughput-bound benchmarks of
checkout A and checkout B, run alternately (A B A B ...) so that whatever
else loads the machine falls on both, then each figure's median per side and
the ratio B/A.

    # a checkout of the old commit with its own venv (e.g. /work/brief/mkwt.sh old bbe95dc), then:
    python benchmarks/side_by_side.py --a /work/wt/old --b . --pairs 3
    python benchmarks/side_by_side.py --a /work/wt/old --b . --summarize-only   # from the results files

Each checkout runs its own ``benchmarks/pipeline_overhead.py`` (latency-bound:
20 trees x 3 turns at 0.5 s; throughput-bound: 100 trees x 3 turns at 50 ms,
C=64, bare loop beside it) and ``benchmarks/scaling.py`` at C=1 (16 trees x
4 turns at 20 ms: a per-call fixed cost shows there) with its own
``.venv/bin/python``; results go to each checkout's ``benchmarks/results/
sbs_*.json``, the summary to ``benchmarks/results/NAME.json`` here. Sizes are
small so that a pair takes about two minutes on a shared 2-core machine. On
a loaded machine wall-clock figures (calls/s, wall/ideal) swing by tens of
percent between neighbouring runs; client CPU per call is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import write_results

RUNS = {
    "pipeline": ["benchmarks/pipeline_overhead.py", "--regime", "both", "--latency-trees", "20",
                 "--latency-turns", "3", "--slow", "0.5", "--trees", "100", "--turns", "3", "--fast", "0.05",
                 "--concurrency", "64", "--bare-calls", "800"],
    "c1": ["benchmarks/scaling.py", "--levels", "1", "--turns", "4", "--trees-min", "16", "--latency", "0.02",
           "--memory-trees", "0"],
}


def figures(kind: str, results: dict[str, Any]) -> dict[str, float]:
    """The compared figures of one run (lower is better for wall/ideal and CPU; higher for calls/s)."""
    if kind == "pipeline":
        lat, thr = results["latency_bound"], results["throughput_bound"]
        return {"latency_wall_over_ideal": lat["wall_over_ideal"],
                "throughput_pipeline_calls_per_s": thr["pipeline_calls_per_s"],
                "throughput_pipeline_cpu_ms_per_call": thr["pipeline_cpu_ms_per_call"],
                "throughput_pipeline_over_bare_calls_per_s": thr["ratio_pipeline_over_bare"],
                "throughput_pipeline_over_bare_cpu_per_call": thr["cpu_per_call_ratio_pipeline_over_bare"]}
    (point,) = results["curve"]
    return {"c1_pipeline_calls_per_s": point["pipeline_calls_per_s"],
            "c1_pipeline_cpu_ms_per_call": point["pipeline_cpu_ms_per_call"],
            "c1_pipeline_over_bare_calls_per_s": point["ratio_pipeline_over_bare"]}


def run_one(checkout: Path, kind: str, name: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([str(checkout / ".venv/bin/python"), *RUNS[kind], "--name", name], cwd=checkout, env=env,
                   check=True, timeout=900)


def summarize(a: Path, b: Path, kinds: list[str]) -> dict[str, Any]:
    per_side: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    loads: dict[str, list[list[float]]] = {"A": [], "B": []}
    for side, checkout in (("A", a), ("B", b)):
        for kind in kinds:
            for path in sorted((checkout / "benchmarks/results").glob(f"sbs_{kind}_{side}*.json")):
                results = json.loads(path.read_text())["results"]
                for key, value in figures(kind, results).items():
                    per_side[side].setdefault(key, []).append(value)
                loads[side].append(results.get("load_average_at_start") or results.get("load_average") or [])
    table = {}
    for key in per_side["A"]:
        ma, mb = statistics.median(per_side["A"][key]), statistics.median(per_side["B"].get(key, [float("nan")]))
        table[key] = {"A": per_side["A"][key], "B": per_side["B"].get(key, []), "median_A": ma, "median_B": mb,
                      "ratio_B_over_A": round(mb / ma, 3) if ma else None}
        print(f"{key:46s} A {ma:9.3f}  B {mb:9.3f}  B/A {table[key]['ratio_B_over_A']}")
    return {"a": str(a), "b": str(b), "figures": table, "load_averages": loads}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Two checkouts' pipeline benchmarks, alternating, with B/A ratios.")
    p.add_argument("--a", type=Path, required=True, help="checkout A (the baseline), with its .venv")
    p.add_argument("--b", type=Path, default=Path(__file__).resolve().parents[1], help="checkout B (default: this)")
    p.add_argument("--pairs", type=int, default=3, help="A B pairs per benchmark (default 3)")
    p.add_argument("--kinds", default="pipeline,c1", help="comma list of: pipeline, c1 (default both)")
    p.add_argument("--summarize-only", action="store_true", help="only summarise the results files already there")
    p.add_argument("--name", default="side_by_side", help="summary file benchmarks/results/NAME.json")
    args = p.parse_args(argv)
    a, b, kinds = args.a.resolve(), args.b.resolve(), [k for k in args.kinds.split(",") if k]
    if not args.summarize_only:
        for kind in kinds:
            for i in range(1, args.pairs + 1):
                for side, checkout in (("A", a), ("B", b)):
                    print(f"== {kind} {side}{i} load {os.getloadavg()}", flush=True)
                    run_one(checkout, kind, f"sbs_{kind}_{side}{i}")
    print(f"wrote {write_results(args.name, summarize(a, b, kinds))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
