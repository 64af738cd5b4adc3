"""Faults from model servers (issue 7): with 20% of calls faulty (429 with
Retry-After, 500, 503, hangs past the timeout, connections closed mid-body,
malformed JSON, empty messages, schema-violating structured output),
``aloe generate`` and ``aloe evaluate`` complete; past the retry budget a
fault is recorded against its tree or case with the reason; the totals are
in the summary line and in ``aloe runs``, and they match what the server
counted: every request the server saw is one recorded attempt."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.reliability import add_personas, aloe, backend_args, model_args, write_benchmark

pytestmark = pytest.mark.integration


def call_totals(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    attempts, retries, failures = conn.execute(
        "SELECT COALESCE(SUM(attempts), 0), COALESCE(SUM(attempts - 1), 0), COALESCE(SUM(error IS NOT NULL), 0)"
        " FROM llm_calls WHERE cached = 0").fetchone()
    conn.close()
    return {"attempts": attempts, "retries": retries, "failures": failures}


def listed_run(db: Path) -> dict:
    done = aloe("runs", f"db={db}", "format=json")
    assert done.code == 0, done.err
    (run,) = json.loads(done.out)
    return run


def test_generate_completes_with_a_fifth_of_calls_faulty(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.2, fault_mix="all", reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 10)
    done = aloe("generate", f"db={db}", "generation.trees=10", "generation.turns=3", "generation.progress=off",
                "log.format=json", *backend_args(clean_server.base_url))
    assert done.code == 0, done.err[-3000:]
    assert "Traceback" not in done.err
    summary = done.summary()
    assert (summary["trees_complete"], summary["trees_failed"], summary["nodes"]) == (10, 0, 30)
    stats = clean_server.stats()
    totals = call_totals(db)
    # every request the server answered (or faulted) is one recorded attempt; every fault one retry
    assert stats["requests"] == totals["attempts"], (stats, totals)
    assert stats["faults_total"] == totals["retries"] + totals["failures"] > 10, (stats, totals)
    assert sum(1 for n in stats["faults"].values() if n) >= 5, stats["faults"]  # a real mix of kinds
    assert summary["retries"] == totals["retries"] and summary["call_failures"] == totals["failures"] == 0
    run = listed_run(db)
    assert (run["status"], run["retries"], run["call_failures"]) == ("complete", totals["retries"], 0)


def test_generate_past_the_retry_budget_records_the_reason_per_tree(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.5, fault_mix="500,503,malformed,disconnect", reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 6)
    args = [f"db={db}", "generation.trees=6", "generation.turns=2", "generation.progress=off", "log.format=json",
            *backend_args(clean_server.base_url), "backend.max_retries=1"]
    done = aloe("generate", *args)
    assert done.code == 3 and "Traceback" not in done.err, done.err[-3000:]
    summary = done.summary()
    assert summary["trees_failed"] >= 1 and summary["trees_complete"] + summary["trees_failed"] == 6
    conn = sqlite3.connect(db)
    failed = conn.execute("SELECT id, error FROM trees WHERE status = 'failed'").fetchall()
    assert len(failed) == summary["trees_failed"]
    reasons = ("HTTP 500", "HTTP 503", "malformed response", "connection error")
    for tree_id, error in failed:  # the reason is the last fault, and its role and branch
        assert "retries exhausted" in error and any(r in error for r in reasons), error
        (call_error,) = conn.execute("SELECT error FROM llm_calls WHERE tree_id = ? AND error IS NOT NULL"
                                     " ORDER BY id DESC LIMIT 1", (tree_id,)).fetchone()
        assert call_error in error
    assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE error IS NOT NULL AND attempts != 2").fetchone()[0] == 0
    conn.close()
    totals = call_totals(db)
    stats = clean_server.stats()
    assert stats["requests"] == totals["attempts"] and stats["faults_total"] == totals["retries"] + totals["failures"]
    assert summary["call_failures"] == totals["failures"] >= summary["trees_failed"]
    run = listed_run(db)
    assert (run["status"], run["call_failures"], run["retries"]) == ("failed", totals["failures"], totals["retries"])
    assert run["trees"]["failed"] == summary["trees_failed"]
    # the faults gone, the failed trees are picked up again and finish
    clean_server.configure(fault_rate=0.0)
    again = aloe("generate", *args, "retry_failed=true")
    assert again.code == 0, again.err[-3000:]
    assert again.summary()["trees_complete"] == 6 and listed_run(db)["status"] == "complete"


def test_evaluate_completes_with_a_fifth_of_calls_faulty(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.2, fault_mix="all", reset=True)
    db = tmp_path / "e.db"
    url = clean_server.base_url
    done = aloe("evaluate", f"db={db}", *write_benchmark(tmp_path), "benchmark.turns=3", "log.format=json",
                f"evaluation.out_dir={tmp_path / 'report'}", *backend_args(url), *model_args(url))
    assert done.code == 0 and "Traceback" not in done.err, done.err[-3000:]
    summary = done.summary()
    assert (summary["status"], summary["cases"], summary["failed_cases"]) == ("complete", 4, 0)
    conn = sqlite3.connect(db)
    turns = conn.execute("SELECT COUNT(*), COUNT(score) FROM eval_turns").fetchone()
    judge_errors = conn.execute("SELECT judge_error FROM eval_turns WHERE score IS NULL").fetchall()
    conn.close()
    assert turns[0] == 12 and turns[0] - turns[1] == summary["judge_failures"] == len(judge_errors)
    assert all(e for (e,) in judge_errors)  # an unscored reply says why
    stats = clean_server.stats()
    totals = call_totals(db)
    assert stats["requests"] == totals["attempts"], (stats, totals)
    assert stats["faults_total"] == totals["retries"] + totals["failures"] > 3, (stats, totals)
    assert summary["retries"] == totals["retries"] and summary["call_failures"] == totals["failures"]
    run = listed_run(db)
    assert (run["kind"], run["retries"], run["call_failures"]) == ("evaluate", totals["retries"], totals["failures"])


def test_evaluate_past_the_retry_budget_records_the_reason_per_case(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.5, fault_mix="500,503,malformed,disconnect", reset=True)
    db = tmp_path / "e.db"
    url = clean_server.base_url
    done = aloe("evaluate", f"db={db}", *write_benchmark(tmp_path), "benchmark.turns=2", "log.format=json",
                f"evaluation.out_dir={tmp_path / 'report'}", *backend_args(url), *model_args(url),
                "backend.max_retries=0", "model.max_retries=0")
    assert "Traceback" not in done.err, done.err[-3000:]
    summary = done.summary()
    conn = sqlite3.connect(db)
    failed = conn.execute("SELECT error FROM eval_cases WHERE status = 'failed'").fetchall()
    judge_errors = conn.execute("SELECT judge_error FROM eval_turns WHERE score IS NULL").fetchall()
    conn.close()
    assert failed or judge_errors  # at a 50% fault rate without retries something failed for good
    assert len(failed) == summary["failed_cases"] and len(judge_errors) == summary["judge_failures"]
    assert done.code == (3 if failed else 0)  # like generate: 3 = some cases failed
    reasons = ("HTTP 500", "HTTP 503", "malformed response", "connection error")
    for (error,) in failed + judge_errors:
        assert error and any(r in error for r in reasons), error
    totals = call_totals(db)
    assert clean_server.stats()["faults_total"] == totals["retries"] + totals["failures"] == totals["failures"]
    assert summary["call_failures"] == totals["failures"] and listed_run(db)["call_failures"] == totals["failures"]


def test_schema_violations_empty_replies_and_hangs_are_retried(tmp_path: Path, clean_server) -> None:
    """The kinds a 20% mix may draw rarely, each made common here."""
    clean_server.configure(fault_rate=0.4, fault_mix="bad_schema=3,empty,hang", reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 4)
    done = aloe("generate", f"db={db}", "generation.trees=4", "generation.turns=2", "generation.progress=off",
                "log.format=json", *backend_args(clean_server.base_url, timeout=1))
    assert done.code == 0, done.err[-3000:]
    assert done.summary()["trees_complete"] == 4
    stats = clean_server.stats()
    assert all(stats["faults"][kind] > 0 for kind in ("bad_schema", "empty", "hang")), stats["faults"]
    totals = call_totals(db)
    assert stats["requests"] == totals["attempts"] and stats["faults_total"] == totals["retries"]
    conn = sqlite3.connect(db)
    for (response,) in conn.execute("SELECT response FROM llm_calls WHERE role = 'inducer'"):
        assert set(json.loads(response)) >= {"profile", "personalities"}  # what was kept matches the schema
    for (text,) in conn.execute("SELECT user_message FROM nodes"):
        assert text.strip()  # no empty message was kept
    conn.close()
