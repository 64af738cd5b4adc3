"""Batch mode at the paper's run shape: how many turn waves, and how long.

Grows ``--trees`` trees of ``--turns`` turns (default: the paper's 3,310 x 10)
with ``aloe generate backend.mode=batch`` (a subprocess) against the loopback
fake of OpenAI's Batch API (tests/support/batch_api.py, in this process) whose
batches take a scaled latency: a batch the model says takes ``--batch-minutes``
minutes (validating + in progress) takes ``--batch-minutes * 60 * --scale``
seconds here. Prints the measured waves, batches, requests and wall time, and
the wall time projected to unscaled batch latency: the critical path is three
sequential hops per turn (user; inducer and rejected together; preferred),
each one batch latency, plus aloesim's own time. The batch latency is a
MODEL, not a measurement of OpenAI (it varies from minutes to the 24 h window).

    .venv/bin/python benchmarks/batch_waves.py                   # 3,310 x 10
    .venv/bin/python benchmarks/batch_waves.py --trees 200 --turns 3
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aloesim.environment.store import connect
from tests.support.batch_api import BatchAPI


def add_personas(db: Path, n: int) -> None:
    conn = connect(db, create=True)
    with conn:
        conn.execute("BEGIN")
        for i in range(n):
            ids = [conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                                " VALUES (?, 'train', ?, 'seed', 0)", (kind, text)).lastrowid
                   for kind, text in (("profile", f"I am person {i}, I keep bees and repair old radios."),
                                      ("personality", f"Patient number {i}, curious, speaks plainly."))]
            conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at) VALUES (?,?,'train',0)",
                         ids)
        conn.execute("COMMIT")
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", type=int, default=3310)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--batch-minutes", type=float, default=10.0, help="modelled latency of one batch")
    ap.add_argument("--scale", type=float, default=1 / 600, help="fake seconds per modelled second")
    args = ap.parse_args()
    batch_s = args.batch_minutes * 60
    with tempfile.TemporaryDirectory() as tmp, \
            BatchAPI(validating_s=0.1 * batch_s, in_progress_s=0.9 * batch_s, time_scale=args.scale) as api:
        db = Path(tmp) / "bench.db"
        add_personas(db, args.trees)
        cmd = [sys.executable, "-m", "aloesim.orchestration.cli", "generate", f"db={db}",
               f"generation.trees={args.trees}", f"generation.turns={args.turns}", "generation.progress=off",
               f"generation.max_trees_in_flight={args.trees}", "backend=openai", f"backend.base_url={api.url}",
               "backend.api_key_env=null", "backend.dialect=openai", "backend.mode=batch",
               f"backend.batch.poll_initial={0.05 * batch_s * args.scale}",
               f"backend.batch.poll_max={0.05 * batch_s * args.scale}", "log.level=INFO", "log.format=json"]
        start = time.monotonic()
        out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                             check=False)
        wall = time.monotonic() - start
        if os.environ.get("BATCH_WAVES_LOG"):
            Path(os.environ["BATCH_WAVES_LOG"]).write_bytes(out.stderr)
        if out.returncode != 0:
            print(out.stderr.decode()[-3000:], file=sys.stderr)
            return 1
        stats = json.loads(out.stdout.decode().strip().splitlines()[-1])
        conn = sqlite3.connect(db)
        batched = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE batch_id IS NOT NULL").fetchone()[0]
        conn.close()
    waves, batches = stats["batch"]["waves"], len(api.submitted)
    fake_batch_s = batch_s * args.scale
    overhead = wall - waves / 4 * 3 * fake_batch_s  # 3 sequential hops per turn of 4 waves
    projected = args.turns * 3 * batch_s + overhead
    print(f"trees x turns            {args.trees} x {args.turns}")
    print(f"requests in batches      {batched} (of {stats['llm_calls']} calls; {stats['trees_complete']} trees complete)")
    print(f"turn waves               {waves} (ideal: 4 per turn = {4 * args.turns})")
    print(f"batches submitted        {batches} (largest {max(map(len, api.submitted))} requests)")
    print(f"wall time on the fake    {wall:.1f} s (one batch = {fake_batch_s:.2f} s here)")
    print(f"aloesim's own time       {overhead:.1f} s (wall minus the batches on the critical path)")
    print(f"projected wall time      {projected / 3600:.2f} h if one batch takes {args.batch_minutes:g} min "
          f"(a model: OpenAI promises 24 h)")
    print(f"dollars (batch rates)    {stats.get('cost_usd')} on the fake's token counts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
