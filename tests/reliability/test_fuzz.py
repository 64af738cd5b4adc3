"""Fuzz (issue 12, "Done when"): a few hundred random malformed replies
(``hostile_replies.fuzz_reply``, seeded: mutated completions, flipped and
random bytes, random JSON, random text with surrogates and controls, odd
content types and encodings, random statuses and redirects, and every named
hostile kind) go through the real gateway of ``aloe generate`` and
``aloe evaluate``, run as a user runs them. The invariants:

- no exception escapes: exit 0 or 3, no traceback on stderr;
- every request the server saw is one recorded attempt (no call without a record);
- every tree ends ``complete`` or ``failed`` with a reason; every case too;
- ``PRAGMA integrity_check`` is ok and the run is not left ``running``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.reliability import add_personas, aloe, backend_args, model_args, write_benchmark

pytestmark = pytest.mark.integration


def invariants(db: Path, done, requests: int, *, table: str) -> sqlite3.Connection:
    assert done.code in (0, 3), (done.code, done.err[-3000:])
    assert "Traceback" not in done.err and "Traceback" not in done.out, done.err[-3000:]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    attempts = conn.execute("SELECT COALESCE(SUM(attempts), 0) FROM llm_calls WHERE cached = 0").fetchone()[0]
    assert attempts == requests, (attempts, requests)
    rows = conn.execute(f"SELECT status, error FROM {table}").fetchall()
    assert rows and all(s == "complete" or (s == "failed" and e) for s, e in rows), rows
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0] == 0
    for (text,) in conn.execute("SELECT response FROM llm_calls WHERE response IS NOT NULL"):
        text.encode("utf-8")  # valid UTF-8: no lone surrogate got through
    return conn


@pytest.mark.parametrize("seed", [11, 23])
def test_generate_under_random_malformed_replies(tmp_path: Path, clean_server, seed: int) -> None:
    clean_server.configure(fault_rate=0.4, fault_mix="fuzz", seed=seed, reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 16)
    done = aloe("generate", f"db={db}", "generation.trees=16", "generation.turns=3", "generation.progress=off",
                "log.format=json", *backend_args(clean_server.base_url, timeout=5), "backend.max_retries=3",
                f"seed={seed}")
    stats = clean_server.stats()
    assert stats["requests"] >= 150 and stats["faults"]["fuzz"] >= 50, stats  # a few hundred replies in all
    conn = invariants(db, done, stats["requests"], table="trees")
    summary = done.summary()
    assert summary["trees_complete"] + summary["trees_failed"] == 16
    assert summary["nodes"] == conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0] > 0
    conn.close()


def test_evaluate_under_random_malformed_replies(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.5, fault_mix="fuzz", seed=5, reset=True)
    db = tmp_path / "e.db"
    url = clean_server.base_url
    done = aloe("evaluate", f"db={db}", *write_benchmark(tmp_path, 3, 2), "benchmark.turns=3", "log.format=json",
                f"evaluation.out_dir={tmp_path / 'report'}", *backend_args(url, timeout=5), *model_args(url, timeout=5),
                "backend.max_retries=3", "model.max_retries=3")
    stats = clean_server.stats()
    assert stats["requests"] >= 40, stats
    conn = invariants(db, done, stats["requests"], table="eval_cases")
    summary = done.summary()
    assert done.code == (3 if summary["failed_cases"] else 0)
    unscored = conn.execute("SELECT COUNT(*) FROM eval_turns WHERE score IS NULL AND judge_error IS NULL").fetchone()
    assert unscored[0] == 0  # an unscored turn says why
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["evaluations"][0]["cases"] == 6
    conn.close()
