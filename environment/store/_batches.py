"""Batches: every statement on ``llm_batches`` and ``llm_batch_requests``, the
journal of the batch mode (a submitted provider batch and the cache keys of
its requests, written before the process waits on it, so a re-run finds it)."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["Batches"]


class Batches:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, batch_id: str, provider: str, model: str, role: str, keys: list[str], state: str) -> None:
        now = time.time()
        self.conn.execute("INSERT OR IGNORE INTO llm_batches (id, provider, model, role, requests, state, created_at,"
                          " updated_at) VALUES (?,?,?,?,?,?,?,?)",
                          (batch_id, provider, model, role, len(keys), state, now, now))
        self.conn.executemany("INSERT OR IGNORE INTO llm_batch_requests (cache_key, batch_id) VALUES (?,?)",
                              [(k, batch_id) for k in keys])

    def set_state(self, batch_id: str, state: str, *, at: float | None = None) -> None:
        """The batch's last seen state (``at``: when it was seen, default now)."""
        self.conn.execute("UPDATE llm_batches SET state = ?, updated_at = ? WHERE id = ?",
                          (state, time.time() if at is None else at, batch_id))

    def latest(self, keys: list[str], provider: str, model: str) -> dict[str, str]:
        """The most recent batch of ``provider`` and ``model`` holding each key (keys in none are left out)."""
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for key, batch_id in self.conn.execute(
                    f"SELECT r.cache_key, r.batch_id FROM llm_batch_requests r JOIN llm_batches b ON b.id = r.batch_id"
                    f" WHERE r.cache_key IN ({marks}) AND b.provider = ? AND b.model = ?"
                    f" ORDER BY b.created_at, b.rowid", (*chunk, provider, model)):
                out[key] = batch_id
        return out

    def states(self) -> dict[str, int]:
        """How many batches are in each state."""
        return dict(self.conn.execute("SELECT state, COUNT(*) FROM llm_batches GROUP BY state").fetchall())
