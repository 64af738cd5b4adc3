"""How close the pre-run estimate of ``aloe generate`` is to what a run uses.

    python benchmarks/generation_estimate.py [--trees 2] [--turns 3] [--seed 0] [--agents default|paper]

Runs ``aloe generate`` in this process on the embedded model (SmolLM2-135M,
llama.cpp, a fresh temporary database seeded with the shipped personas)
with ``generation.estimate=true``, then prints, per role and in total:
the estimated calls vs the calls made, and the measured prompt and
completion tokens (the server's own counts) as a share of the estimate's
upper bound. Writes benchmarks/results/generation_estimate.json.

The estimate puts every reply at its max_tokens and converts characters to
tokens at about four per token. A share above 1 means the run used more than
that (the server's chat template, e.g. SmolLM2's injected system prompt, and
its tokenizer cost more than the conversion allows); well below 1 means
replies stopped short of their limits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=2)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agents", default="default", choices=("default", "paper"))
    args = parser.parse_args(argv)

    from aloesim.environment.store import Calls, Runs, connect
    from aloesim.orchestration._config import compose_config
    from aloesim.orchestration.commands import generate

    with tempfile.TemporaryDirectory(prefix="aloe-estimate-") as tmp:
        db = Path(tmp) / "estimate.db"
        cfg = compose_config("generate", [f"db={db}", f"seed={args.seed}", f"generation.trees={args.trees}",
                                          f"generation.turns={args.turns}", "generation.estimate=true",
                                          "generation.progress=off", f"agents={args.agents}", "cache=false",
                                          "log.level=WARNING"])
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = generate.run(cfg)
        conn = connect(db, readonly=True)
        try:
            run = Runs(conn).all("generate")[0]
            stats = run.stats
            # the calls made (a failed call counted too: it was asked for; its tokens are what it used)
            used = {r.role: {"calls": r.calls, "prompt_tokens": r.prompt_tokens,
                             "completion_tokens": r.completion_tokens} for r in Calls(conn).by_role(run.id)}
        finally:
            conn.close()
    est = stats["estimate"]
    rows = {}
    print(f"aloe generate exit {code}: {args.trees} trees x {args.turns} turns, agents={args.agents}")
    print(f"{'role':<10} {'calls est/made':>15} {'prompt used/est':>18} {'completion used/est':>22}")
    for role, bound in est["roles"].items():
        u = used.get(role, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        rows[role] = {"calls_estimated": bound["calls"], "calls_made": u["calls"],
                      "prompt_share": round(u["prompt_tokens"] / bound["prompt_tokens"], 3),
                      "completion_share": round(u["completion_tokens"] / bound["completion_tokens"], 3)}
        print(f"{role:<10} {bound['calls']:>7}/{u['calls']:<7} {rows[role]['prompt_share']:>18.3f} "
              f"{rows[role]['completion_share']:>22.3f}")
    total = {"calls_estimated": est["calls"], "calls_made": sum(u["calls"] for u in used.values()),
             "prompt_share": round(stats["prompt_tokens"] / est["prompt_tokens_at_limits"], 3),
             "completion_share": round(stats["completion_tokens"] / est["completion_tokens_at_limits"], 3)}
    print(f"{'total':<10} {total['calls_estimated']:>7}/{total['calls_made']:<7} {total['prompt_share']:>18.3f} "
          f"{total['completion_share']:>22.3f}")
    print("printed before the run:", err.getvalue().strip().splitlines()[0] if err.getvalue().strip() else "(none)")
    path = write_results("generation_estimate", {
        "machine": machine_info(), "args": vars(args), "estimate": est, "roles": rows, "total": total,
        "retries": stats["retries"], "call_failures": stats["call_failures"]})
    print(f"results: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
