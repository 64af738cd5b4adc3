"""Helpers of the reliability tests (issue 7, tests/reliability/): ``aloe`` as a
subprocess, seeded databases and the checks every database must pass at any
moment. The fault-injecting latency server (benchmarks/latency_server.py) is
the folder's ``server`` fixture (tests/reliability/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aloesim.environment.store import connect

ROOT = Path(__file__).resolve().parents[2]

ALOE = [sys.executable, "-m", "aloesim.orchestration.cli"]
KEY_VAR = "ALOE_RELIABILITY_KEY"
SECRET = "sk-ALOE-TEST-SECRET-1234"


def env(**extra: str) -> dict[str, str]:
    """The environment of an aloe subprocess: offline, the test key set."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", KEY_VAR: SECRET, **extra}


@dataclass
class Done:
    """A finished aloe subprocess."""

    code: int
    out: str
    err: str

    def summary(self) -> dict:
        """The JSON summary a command prints last on stdout."""
        return json.loads(self.out.strip().splitlines()[-1])


def aloe(*args: str, timeout: float = 180, **extra_env: str) -> Done:
    """Run ``aloe ARGS`` to its end."""
    proc = subprocess.run([*ALOE, *args], env=env(**extra_env), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return Done(proc.returncode, proc.stdout, proc.stderr)


def start(args: list[str], log: Path) -> subprocess.Popen:
    """Start ``aloe ARGS`` in its own process group (to SIGKILL it whole)."""
    with log.open("ab") as err:
        return subprocess.Popen([*ALOE, *args], env=env(), cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def backend_args(url: str, timeout: float = 2) -> list[str]:
    """Every role on the latency server, with short attempts (hangs cost ``timeout``)."""
    return ["backend=openai", f"backend.base_url={url}", f"backend.api_key_env={KEY_VAR}",
            "backend.dialect=openai", f"backend.timeout={timeout}"]


def model_args(url: str, timeout: float = 2) -> list[str]:
    """The evaluated model (``aloe evaluate``) on the latency server."""
    return ["model=openai", f"model.base_url={url}", f"model.api_key_env={KEY_VAR}", "model.name=latency-server",
            f"model.timeout={timeout}"]


def persona_texts(i: int) -> tuple[str, str]:
    return (f"I am a lighthouse keeper, number {i}, on a windy northern island and I solve crosswords.",
            f"Dry humour number {i}, speaks in clipped sentences, distrusts small talk.")


def add_personas(db: Path, n: int) -> None:
    """``n`` train personas written straight into a new database (no embedder needed)."""
    conn = connect(db, create=True)
    with conn:
        conn.execute("BEGIN")
        for i in range(n):
            ids = [conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                                " VALUES (?, 'train', ?, 'seed', 0)", (kind, text)).lastrowid
                   for kind, text in zip(("profile", "personality"), persona_texts(i))]
            conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at)"
                         " VALUES (?, ?, 'train', 0)", ids)
        conn.execute("COMMIT")
    conn.close()


def write_benchmark(folder: Path, profiles: int = 2, personalities: int = 2) -> list[str]:
    """Benchmark files in the published format; returns the evaluate overrides naming them."""
    p, q = folder / "profiles.jsonl", folder / "personalities.jsonl"
    p.write_text("".join(json.dumps(persona_texts(i)[0]) + "\n" for i in range(profiles)))
    q.write_text("".join(json.dumps(persona_texts(i)[1]) + "\n" for i in range(personalities)))
    return [f"benchmark.profiles={p}", f"benchmark.personalities={q}"]


def file_state(path: Path) -> str | None:
    """SHA-256 of a database file and of its -wal/-journal side files when they
    hold anything (None when the database is absent). An empty -wal (and the
    -shm index) is what a read-only SQLite connection leaves behind."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        if p.exists() and p.stat().st_size:
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def check_trees(db: Path, *, trees: int | None = None, turns: int | None = None) -> None:
    """What must hold in a generate database at any moment; with ``trees``/``turns`` also completeness."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT tree_id, branch FROM nodes GROUP BY tree_id, branch"
                            " HAVING COUNT(*) > 1").fetchall() == []
        assert conn.execute("SELECT tree_id, turn FROM nodes GROUP BY tree_id, turn"
                            " HAVING COUNT(*) > 1").fetchall() == []  # path mode: one node per (tree, turn)
        orphans = conn.execute(
            "SELECT n.id FROM nodes n LEFT JOIN nodes p ON p.id = n.parent_id LEFT JOIN trees t ON t.id = n.tree_id"
            " WHERE t.id IS NULL OR (n.branch = '' AND n.parent_id IS NOT NULL)"
            " OR (n.branch != '' AND (p.id IS NULL OR p.tree_id != n.tree_id OR p.turn != n.turn - 1))").fetchall()
        assert orphans == []
        if trees is not None:
            assert dict(conn.execute("SELECT status, COUNT(*) FROM trees GROUP BY status").fetchall()) == \
                {"complete": trees}
            counts = conn.execute("SELECT COUNT(n.id) FROM trees t LEFT JOIN nodes n ON n.tree_id = t.id"
                                  " GROUP BY t.id").fetchall()
            assert {c for (c,) in counts} == {turns}
    finally:
        conn.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
