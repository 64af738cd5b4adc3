"""Read-only access to the pools for tools: export and statistics.

``export_pool`` writes the published format: DIR/profiles.jsonl and
DIR/personalities.jsonl (one JSON string per line) and DIR/personas.jsonl
(one object per line: id, profile, personality).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from ._embed import Embedder, from_blob
from ._jsonl import write_items, write_objects

__all__ = ["export_pool", "pool_vectors"]


def export_pool(conn: sqlite3.Connection, out_dir: str | os.PathLike[str], split: str = "train") -> dict[str, int]:
    """Write the pools and personas of ``split`` to ``out_dir`` (created if
    missing); returns the number of lines written per file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "export.dir exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(out), f"cannot create the export directory ({exc.strerror})") from None
    q = "SELECT text FROM persona_items WHERE kind = ? AND split = ? ORDER BY id"
    profiles = [r[0] for r in conn.execute(q, ("profile", split))]
    personalities = [r[0] for r in conn.execute(q, ("personality", split))]
    personas = [
        {"id": r[0], "profile": r[1], "personality": r[2]}
        for r in conn.execute(
            "SELECT p.id, a.text, b.text FROM personas p JOIN persona_items a ON a.id = p.profile_id"
            " JOIN persona_items b ON b.id = p.personality_id WHERE p.split = ? ORDER BY p.id", (split,))
    ]
    return {
        "profiles": write_items(out / "profiles.jsonl", profiles),
        "personalities": write_items(out / "personalities.jsonl", personalities),
        "personas": write_objects(out / "personas.jsonl", personas),
    }


def pool_vectors(conn: sqlite3.Connection, kind: str, split: str, embedder: Embedder) -> tuple[list[str], np.ndarray]:
    """A pool's texts and vectors (id order), using the stored vectors made by
    ``embedder`` and encoding the others in memory (nothing is written).
    Blocking: call it from a worker thread."""
    rows = conn.execute(
        "SELECT text, embedder, embedding FROM persona_items WHERE kind = ? AND split = ? ORDER BY id", (kind, split)
    ).fetchall()
    texts = [r[0] for r in rows]
    stale = [i for i, r in enumerate(rows) if r[2] is None or r[1] != embedder.name]
    fresh = dict(zip(stale, embedder.encode([texts[i] for i in stale]))) if stale else {}
    if not rows:
        return texts, np.zeros((0, 0), dtype=np.float32)
    vecs = [fresh[i] if i in fresh else from_blob(r[2]) for i, r in enumerate(rows)]
    return texts, np.vstack(vecs).astype(np.float32)
