"""Personas: every statement on ``persona_items`` and ``personas``.

The persona join (a persona with its profile and personality texts) has
its one home here: ``PERSONA_TEXTS`` is the join fragment the trees
repository reuses when it lists trees with their personas.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .._types import Persona

__all__ = ["PERSONA_TEXTS", "Personas", "PoolItem"]

# personas p joined to their two texts: the columns are pa.text (profile) and pb.text (personality)
PERSONA_TEXTS = ("JOIN persona_items pa ON pa.id = p.profile_id"
                 " JOIN persona_items pb ON pb.id = p.personality_id")
_PERSONA_COLS = "p.id, pa.text AS profile, pb.text AS personality, p.split"


@dataclass(frozen=True, slots=True)
class PoolItem:
    """One ``persona_items`` row of a pool, with its stored vector (float32 bytes)."""

    id: int
    text: str
    iteration: int | None
    embedder: str | None
    embedding: bytes | None


def _persona(row: sqlite3.Row) -> Persona:
    return Persona(id=row["id"], profile=row["profile"], personality=row["personality"], split=row["split"])


class Personas:
    """Every statement on ``persona_items`` (the pools) and ``personas`` (the pairs)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- pools ---------------------------------------------------------------
    def pool(self, kind: str, split: str) -> list[PoolItem]:
        """A pool's items in id order, with their stored vectors."""
        rows = self.conn.execute("SELECT id, text, iteration, embedder, embedding FROM persona_items"
                                 " WHERE kind = ? AND split = ? ORDER BY id", (kind, split))
        return [PoolItem(r["id"], r["text"], r["iteration"], r["embedder"], r["embedding"]) for r in rows]

    def texts(self, kind: str, split: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT text FROM persona_items WHERE kind = ? AND split = ? ORDER BY id", (kind, split))]

    def item_ids(self, kind: str, split: str) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM persona_items WHERE kind = ? AND split = ? ORDER BY id", (kind, split))]

    def count_items(self, kind: str, split: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM persona_items WHERE kind = ? AND split = ?",
                                 (kind, split)).fetchone()[0]

    def set_embeddings(self, updates: Sequence[tuple[int, bytes]], embedder: str) -> None:
        """Store recomputed vectors: ``(item id, float32 bytes)`` made by ``embedder``."""
        self.conn.executemany("UPDATE persona_items SET embedding = ?, embedder = ? WHERE id = ?",
                              [(blob, embedder, item) for item, blob in updates])

    def add_items(self, kind: str, split: str, texts: Sequence[str], blobs: Sequence[bytes], embedder: str, *,
                  source: str, run_id: int | None = None, iteration: int | None = None) -> list[int | None]:
        """Insert items with their vectors; an item already in the pool is
        skipped and its slot in the returned ids is None."""
        ids: list[int | None] = []
        t = time.time()
        for text, blob in zip(texts, blobs):
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO persona_items (kind, split, text, source, run_id, iteration, embedder,"
                " embedding, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, split, text, source, run_id, iteration, embedder, blob, t))
            ids.append(cur.lastrowid if cur.rowcount else None)
        return ids

    # -- personas --------------------------------------------------------------
    def personas(self, split: str | None = None) -> list[Persona]:
        """Personas with their texts, in id order (every split when ``split`` is None)."""
        if split is None:
            rows = self.conn.execute(f"SELECT {_PERSONA_COLS} FROM personas p {PERSONA_TEXTS} ORDER BY p.id")
        else:
            rows = self.conn.execute(f"SELECT {_PERSONA_COLS} FROM personas p {PERSONA_TEXTS}"
                                     " WHERE p.split = ? ORDER BY p.id", (split,))
        return [_persona(r) for r in rows]

    def get(self, persona_id: int) -> Persona | None:
        row = self.conn.execute(f"SELECT {_PERSONA_COLS} FROM personas p {PERSONA_TEXTS} WHERE p.id = ?",
                                (persona_id,)).fetchone()
        return None if row is None else _persona(row)

    def count(self, split: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM personas WHERE split = ?", (split,)).fetchone()[0]

    def pairs(self, split: str) -> set[tuple[int, int]]:
        """The (profile item id, personality item id) pairs of a split."""
        return {(r[0], r[1]) for r in self.conn.execute(
            "SELECT profile_id, personality_id FROM personas WHERE split = ?", (split,))}

    def add_pairs(self, pairs: Sequence[tuple[int, int]], split: str) -> None:
        t = time.time()
        self.conn.executemany("INSERT OR IGNORE INTO personas (profile_id, personality_id, split, created_at)"
                              " VALUES (?, ?, ?, ?)", [(a, b, split, t) for a, b in pairs])
