"""Runs: every statement on ``runs``, ``run_leases`` and ``checkpoints``.

A repository wraps a ``sqlite3.Connection``: in a command, a write runs
inside the store's writer (``await store.write(lambda c: Runs(c).finish(...))``)
and a read on its reader (``await store.read(lambda c: Runs(c).get(id))``);
tools that are not async use a ``connect(...)`` connection directly.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ._rows import dumps, loads, row_as

__all__ = ["Checkpoints", "Lease", "RunRecord", "Runs"]

_RUN_COLS = "id, kind, config, config_hash, status, started_at, finished_at, stats, wall_s, invocations"
_LEASE_COLS = "run_id, holder, pid, host, acquired_at, heartbeat_at, stale_after"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``runs``; ``config`` and ``stats`` parsed (the text when not JSON).

    ``wall_s`` is the run's wall time: the sum of its invocations' wall time
    (the one in progress counted up to its last heartbeat)."""

    id: int
    kind: str
    config: Any
    config_hash: str
    status: str
    started_at: float
    finished_at: float | None
    stats: Any
    wall_s: float
    invocations: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Who is running a run: a random token per invocation, its process and host,
    when it last said it was alive, and how long it may stay silent."""

    run_id: int
    holder: str
    pid: int
    host: str
    acquired_at: float
    heartbeat_at: float
    stale_after: float


def _run(row: sqlite3.Row) -> RunRecord:
    return row_as(RunRecord, row, config=loads(row["config"]), stats=loads(row["stats"]))


class Runs:
    """Every statement on ``runs`` and ``run_leases``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- reading -----------------------------------------------------------
    def get(self, run_id: int) -> RunRecord | None:
        row = self.conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def latest(self, kind: str, config_hash: str) -> RunRecord | None:
        """The newest run of ``kind`` with this identity (the one a command resumes)."""
        row = self.conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE kind = ? AND config_hash = ?"
                                " ORDER BY id DESC LIMIT 1", (kind, config_hash)).fetchone()
        return None if row is None else _run(row)

    def all(self, kind: str | None = None) -> list[RunRecord]:
        """Every run (of ``kind``), oldest first."""
        if kind is None:
            rows = self.conn.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY id")
        else:
            rows = self.conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE kind = ? ORDER BY id", (kind,))
        return [_run(r) for r in rows]

    def page(self, *, limit: int, offset: int = 0) -> list[RunRecord]:
        rows = self.conn.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
        return [_run(r) for r in rows]

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def first(self) -> RunRecord | None:
        row = self.conn.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY id LIMIT 1").fetchone()
        return None if row is None else _run(row)

    def newest_ids(self, n: int) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM runs ORDER BY id DESC LIMIT ?", (n,))]

    def ids(self, kind: str) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM runs WHERE kind = ? ORDER BY id", (kind,))]

    # -- writing -----------------------------------------------------------
    def create(self, kind: str, config: Any, config_hash: str) -> int:
        """A new run, running, in its first invocation."""
        return self.conn.execute(
            "INSERT INTO runs (kind, config, config_hash, status, started_at, invocations)"
            " VALUES (?, ?, ?, 'running', ?, 1)", (kind, dumps(config), config_hash, time.time())).lastrowid

    def reopen(self, run_id: int) -> None:
        """The run is running again, in one more invocation."""
        self.conn.execute("UPDATE runs SET status = 'running', finished_at = NULL, invocations = invocations + 1"
                          " WHERE id = ?", (run_id,))

    def finish(self, run_id: int, status: str, stats: Any, *, wall_s: float | None = None) -> None:
        """Record how the run ended; ``wall_s`` (when given) is its total wall time."""
        if wall_s is None:
            self.conn.execute("UPDATE runs SET status = ?, finished_at = ?, stats = ? WHERE id = ?",
                              (status, time.time(), None if stats is None else dumps(stats), run_id))
        else:
            self.conn.execute("UPDATE runs SET status = ?, finished_at = ?, stats = ?, wall_s = ? WHERE id = ?",
                              (status, time.time(), None if stats is None else dumps(stats), wall_s, run_id))

    def set_wall(self, run_id: int, wall_s: float) -> None:
        self.conn.execute("UPDATE runs SET wall_s = ? WHERE id = ?", (wall_s, run_id))

    def take_state(self, run_id: int, status: str, finished_at: float | None, stats: str | None,
                   wall_s: float, invocations: int) -> None:
        """Copy another database's later state of the same run (``aloe merge``)."""
        self.conn.execute("UPDATE runs SET status = ?, finished_at = ?, stats = ?, wall_s = ?, invocations = ?"
                          " WHERE id = ?", (status, finished_at, stats, wall_s, invocations, run_id))

    # -- leases ------------------------------------------------------------
    def lease(self, run_id: int) -> Lease | None:
        row = self.conn.execute(f"SELECT {_LEASE_COLS} FROM run_leases WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row_as(Lease, row)

    def leases(self) -> dict[int, Lease]:
        rows = self.conn.execute(f"SELECT {_LEASE_COLS} FROM run_leases")
        return {r["run_id"]: row_as(Lease, r) for r in rows}

    def take_lease(self, lease: Lease) -> None:
        """Hold ``lease.run_id`` (replacing a stale holder: the caller decided it is stale)."""
        self.conn.execute(f"INSERT OR REPLACE INTO run_leases ({_LEASE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (lease.run_id, lease.holder, lease.pid, lease.host, lease.acquired_at, lease.heartbeat_at,
                           lease.stale_after))

    def beat(self, run_id: int, holder: str, wall_s: float) -> bool:
        """Refresh the holder's heartbeat and the run's wall time; False when
        ``holder`` no longer holds the run (another process took it over)."""
        cur = self.conn.execute("UPDATE run_leases SET heartbeat_at = ? WHERE run_id = ? AND holder = ?",
                                (time.time(), run_id, holder))
        if cur.rowcount == 0:
            return False
        self.set_wall(run_id, wall_s)
        return True

    def release(self, run_id: int, holder: str) -> bool:
        """Give the run up; False when ``holder`` no longer held it."""
        return self.conn.execute("DELETE FROM run_leases WHERE run_id = ? AND holder = ?",
                                 (run_id, holder)).rowcount > 0


class Checkpoints:
    """Every statement on ``checkpoints``: the models a training run saved."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, run_id: int, path: str, stage: str, base_model: str, source_runs: list[int],
            metrics: dict[str, Any]) -> int:
        return self.conn.execute(
            "INSERT INTO checkpoints (run_id, path, stage, base_model, source_runs, metrics, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, path, stage, base_model, dumps(source_runs), dumps(metrics), time.time())).lastrowid
