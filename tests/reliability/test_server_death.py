"""A managed server that dies or hangs mid-run (issue 12.8), with the REAL
embedded llama.cpp server that ``aloe generate`` starts itself: the test
SIGKILLs (or SIGSTOPs) that process while trees are growing.

- with restarts allowed, the death is noticed, logged with the log's tail,
  the server restarted on its port, and the run completes;
- with none left, the run stops cleanly: one ``server error`` line naming
  the server, the exit code and the log tail, ending with the next step
  (``retry_failed=true``); no traceback (no ``ClosedResourceError``); the run
  and its unfinished trees are marked failed, never left ``running``; and
  ``retry_failed=true`` then finishes the work;
- a server that stops answering (SIGSTOP) fails its health checks for
  ``backend.hang_timeout`` seconds, is killed and restarted.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support.reliability import ALOE, ROOT, add_personas, aloe, env, wait_for

pytestmark = pytest.mark.integration

SMOKE = ["experiment=smoke", "generation.trees=3", "generation.turns=2", "generation.progress=off",
         "log.format=json", "backend.timeout=60"]


def calls(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM llm_calls WHERE error IS NULL").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def llama_server(proc: subprocess.Popen) -> psutil.Process:
    """The llama.cpp server process aloe started (a descendant of it)."""
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "llama_cpp.server" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no llama.cpp server among aloe's children")


def run_and_strike(tmp_path: Path, db: Path, sig: signal.Signals, *extra: str, after_calls: int = 2,
                   timeout: float = 420) -> tuple[int, str, int]:
    """Start ``aloe generate``, send ``sig`` to its llama.cpp server once ``after_calls``
    calls are recorded, wait for the end; returns (exit code, stderr, the struck pid)."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen([*ALOE, "generate", f"db={db}", *SMOKE, *extra], env=env(), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=err)
    try:
        wait_for(lambda: calls(db) >= after_calls or proc.poll() is not None, 300, "the first calls")
        assert proc.poll() is None, err_path.read_text()[-3000:]
        victim = llama_server(proc)
        victim.send_signal(sig)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (tmp_path / "stdout.txt").write_bytes(out or b"")
    return proc.returncode, err_path.read_text(), victim.pid


def events(stderr: str, name: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            out.append(json.loads(line))
    return out


def test_a_killed_server_is_restarted_and_the_run_completes(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    code, err, pid = run_and_strike(tmp_path, db, signal.SIGKILL, "backend.max_restarts=1")
    assert code == 0, err[-3000:]
    assert "Traceback" not in err and "ClosedResourceError" not in err
    (down,) = events(err, "server.down")
    assert down["cause"] == "exited with code -9" and "llama.cpp server on 127.0.0.1:" in down["server"]
    assert down["log_tail"]  # the end of its log, named in the message
    assert events(err, "server.restarted")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert dict(conn.execute("SELECT status, COUNT(*) FROM trees GROUP BY status").fetchall()) == {"complete": 3}
    assert conn.execute("SELECT status FROM runs").fetchone()[0] == "complete"
    conn.close()


def test_with_no_restart_left_the_run_stops_cleanly_marked_and_resumable(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    code, err, _ = run_and_strike(tmp_path, db, signal.SIGKILL, "backend.max_restarts=0")
    assert code == 1, err[-3000:]
    assert "Traceback" not in err and "ClosedResourceError" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("aloe generate: server error: llama.cpp server on 127.0.0.1:"), last
    assert "exited with code -9; not restarted (backend.max_restarts=0); log " in last
    assert last.endswith("re-run the same command with retry_failed=true"), last
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    statuses = conn.execute("SELECT status, error FROM trees").fetchall()
    assert {s for s, _ in statuses} <= {"complete", "failed"} and any(s == "failed" for s, _ in statuses)
    assert all("server error" in e for s, e in statuses if s == "failed"), statuses
    conn.close()
    runs = json.loads(aloe("runs", f"db={db}", "format=json").out)
    assert [r["status"] for r in runs] == ["failed"]  # not left "running"
    again = aloe("generate", f"db={db}", *SMOKE, "retry_failed=true", timeout=420)
    assert again.code == 0, again.err[-3000:]
    assert again.summary()["trees_complete"] == 3


def test_a_hung_server_is_killed_and_restarted(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    started = time.monotonic()
    code, err, _ = run_and_strike(tmp_path, db, signal.SIGSTOP, "backend.max_restarts=1", "backend.hang_timeout=8")
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    (down,) = events(err, "server.down")
    assert "answered no health check" in down["cause"] and "hung; killed" in down["cause"]
    assert events(err, "server.restarted")
    assert time.monotonic() - started < 400
    conn = sqlite3.connect(db)
    assert dict(conn.execute("SELECT status, COUNT(*) FROM trees GROUP BY status").fetchall()) == {"complete": 3}
    conn.close()
