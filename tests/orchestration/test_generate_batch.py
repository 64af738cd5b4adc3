"""``aloe generate`` with ``backend.mode=batch`` against the loopback fake of
OpenAI's Batch API (tests/support/batch_api.py), whose model answers the
same request the same way online and inside a batch:

- the trees grown in batch mode equal those grown online (byte-identical
  exports), in one turn wave per hop and turn, every call recorded with its
  batch id and priced at batch rates, nothing sent online, and a new run
  of the same requests answered from the cache (nothing submitted);
- requests that fail or expire inside a batch are retried (next wave, or
  online), every tree completes;
- a SIGKILL between submit and completion, then a re-run: the submitted
  batch is picked up, no request is submitted twice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_generate import add_personas  # sibling test module

from aloesim.orchestration.cli import main
from tests.support.batch_api import BatchAPI

ROOT = Path(__file__).resolve().parents[2]
TREES, TURNS = 6, 3


def args(db: Path, url: str, mode: str, *extra: str) -> list[str]:
    return [f"db={db}", f"generation.trees={TREES}", f"generation.turns={TURNS}", "generation.progress=off",
            "backend=openai", f"backend.base_url={url}", "backend.api_key_env=null", "backend.dialect=openai",
            f"backend.mode={mode}", "backend.batch.window=5", "backend.batch.poll_initial=0.02",
            "backend.batch.poll_max=0.1", "backend.backoff_base=0.01", "backend.backoff_max=0.02", *extra]


def grow(tmp: Path, name: str, api: BatchAPI, mode: str, *extra: str, capsys=None) -> tuple[Path, dict[str, bytes]]:
    db = tmp / f"{name}.db"
    add_personas(db, TREES)
    assert main(["generate", *args(db, api.url, mode, *extra)]) == 0
    if capsys is not None:
        grow.stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = tmp / f"{name}-export"
    assert main(["export", f"db={db}", f"export.dir={out}"]) == 0
    return db, {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl"))}


def test_batch_trees_equal_online_trees_in_one_wave_per_hop_and_turn(tmp_path: Path, capsys) -> None:
    with BatchAPI(in_progress_s=0.05) as api:
        online_db, online = grow(tmp_path, "online", api, "online")
        sent_online = api.online
        batch_db, batch = grow(tmp_path, "batch", api, "batch", capsys=capsys)
        assert api.online == sent_online  # batch mode sent nothing online
        submitted = list(api.submitted)
        assert main(["generate", *args(batch_db, api.url, "batch"), "resume=false"]) == 0  # a new run, same requests
        assert api.submitted == submitted and api.online == sent_online  # cache hits are never sent
    assert sent_online == TREES * TURNS * 4
    assert online and batch == online  # byte-identical exports
    assert all(len(ids) == TREES for ids in submitted)  # every wave full: all trees in flight
    assert len(submitted) == TURNS * 4  # user, inducer, rejected, preferred per turn
    stats = grow.stats
    assert stats["batch"] == {"waves": TURNS * 4, "batches": TURNS * 4}
    conn = sqlite3.connect(batch_db)
    rows = conn.execute("SELECT batch_id, cost_usd, prompt_tokens, completion_tokens FROM llm_calls"
                        " WHERE cached = 0").fetchall()
    assert len(rows) == TREES * TURNS * 4 and all(r[0] for r in rows)
    assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE cached = 1 AND batch_id IS NULL").fetchone()[0] \
        == TREES * TURNS * 4
    assert {r[0] for r in rows} == {b for (b,) in conn.execute("SELECT id FROM llm_batches")}
    assert conn.execute("SELECT DISTINCT state FROM llm_batches").fetchall() == [("completed",)]
    online_cost = sqlite3.connect(online_db).execute("SELECT SUM(cost_usd) FROM llm_calls").fetchone()[0]
    batch_cost = sum(r[1] for r in rows)
    assert online_cost > 0 and batch_cost == pytest.approx(online_cost / 2, rel=1e-6)  # gpt-4o: half price


@pytest.mark.parametrize("retry", ["wave", "online"])
def test_failed_and_expired_requests_are_retried_never_lost(tmp_path: Path, retry: str) -> None:
    with BatchAPI(in_progress_s=0.05) as api:
        api.fail_rate, api.expire_batches = 0.2, 1
        batch_db, _batch = grow(tmp_path, "batch", api, "batch", f"backend.batch.retry={retry}")
        sent_online = api.online
    conn = sqlite3.connect(batch_db)
    assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE error IS NOT NULL").fetchone()[0] == 0
    in_batch_retries = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE attempts > 1 AND batch_id IS NOT NULL")
    online_calls = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE batch_id IS NULL").fetchone()[0]
    if retry == "online":  # each failed request answered once online, recorded as an online call
        assert sent_online == online_calls > 0 and in_batch_retries.fetchone()[0] == 0
    else:
        assert sent_online == online_calls == 0 and in_batch_retries.fetchone()[0] > 0
    assert conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0] == TREES * TURNS * 4
    trees = conn.execute("SELECT status, COUNT(*) FROM trees GROUP BY status").fetchall()
    assert trees == [("complete", TREES)]
    assert conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0] == TREES * TURNS
    expired = conn.execute("SELECT COUNT(*) FROM llm_batches WHERE state = 'expired'").fetchone()[0]
    assert expired == 1


@pytest.mark.integration
def test_sigkill_between_submit_and_completion_then_resume_does_not_resubmit(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    add_personas(db, TREES)
    with BatchAPI(in_progress_s=0.05) as api:
        _, online = grow(tmp_path, "online", api, "online")
        api.hold = True  # the first batch stays in_progress until the process is killed
        log = (tmp_path / "killed.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "aloesim.orchestration.cli", "generate",
                                 *args(db, api.url, "batch")], cwd=ROOT, start_new_session=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while api.count("GET", "/v1/batches/batch_1") < 2:  # submitted, and being waited on
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.close()
        journal = sqlite3.connect(db).execute("SELECT id, role, requests FROM llm_batches").fetchall()
        assert journal == [("batch_1", "user", TREES)]  # recorded before the process waited on it
        polled_before = api.count("GET", "/v1/batches/batch_1")
        api.hold = False
        assert main(["generate", *args(db, api.url, "batch")]) == 0
        submitted, polled_after = api.submitted, api.count("GET", "/v1/batches/batch_1")
    ids = [cid for batch in submitted for cid in batch]
    assert len(submitted) == TURNS * 4  # the re-run submitted the other waves only: batch_1 was picked up
    assert len(ids) == len(set(ids)) == TREES * TURNS * 4  # no request submitted twice
    assert polled_after > polled_before
    out = tmp_path / "killed-export"
    assert main(["export", f"db={db}", f"export.dir={out}"]) == 0
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl"))} == online


def test_dry_run_prices_a_batch_backend_at_batch_rates(tmp_path: Path, capsys) -> None:
    plans = {}
    for mode in ("online", "batch"):
        db = tmp_path / f"{mode}.db"
        add_personas(db, TREES)
        assert main(["generate", *args(db, "http://127.0.0.1:9/v1", mode), "dry_run=true"]) == 0
        plans[mode] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plans["online"]["cost_usd"] > 0
    assert plans["batch"]["cost_usd"] == pytest.approx(plans["online"]["cost_usd"] / 2, rel=1e-6)


def test_a_wave_over_the_file_limit_is_split_and_progress_shows_waves(tmp_path: Path, capsys) -> None:
    with BatchAPI(in_progress_s=0.05) as api:
        _, online = grow(tmp_path, "online", api, "online")
        capsys.readouterr()
        _, batch = grow(tmp_path, "batch", api, "batch", "backend.batch.max_requests=4", "generation.progress=log",
                        "generation.progress_interval=0.2", "log.format=json")
        sizes = [len(ids) for ids in api.submitted]
    assert batch == online
    assert sorted(sizes) == [2] * (TURNS * 4) + [4] * (TURNS * 4)  # each wave of 6 requests in two files
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"generate.progress"' in x]
    assert lines and all("waves" in x and "batches" in x for x in lines)
    assert max(x["waves"] for x in lines) >= 1


def test_a_batch_api_that_refuses_every_file_fails_the_trees_in_one_line_each(tmp_path: Path, capsys) -> None:
    db = tmp_path / "refused.db"
    add_personas(db, TREES)
    with BatchAPI(max_requests=2) as api:  # the provider takes 2 requests a file; aloesim was told 50,000
        code = main(["generate", *args(db, api.url, "batch", "backend.max_retries=1")])
    assert code == 3  # trees failed, the run ended normally
    assert "Traceback" not in capsys.readouterr().err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status, COUNT(*) FROM trees GROUP BY status").fetchall() == [("failed", TREES)]
    errors = [e for (e,) in conn.execute("SELECT error FROM trees")]
    assert all("HTTP 400: more than 2 requests" in e and "\n" not in e for e in errors)
    failed = conn.execute("SELECT COUNT(*), MAX(attempts) FROM llm_calls WHERE error IS NOT NULL").fetchone()
    assert failed == (TREES, 2)  # every user call recorded failed after its retry
