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
from ..store import Personas
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
    repo = Personas(conn)
    profiles, personalities = repo.texts("profile", split), repo.texts("personality", split)
    personas = [{"id": p.id, "profile": p.profile, "personality": p.personality} for p in repo.personas(split)]
    return {
        "profiles": write_items(out / "profiles.jsonl", profiles),
        "personalities": write_items(out / "personalities.jsonl", personalities),
        "personas": write_objects(out / "personas.jsonl", personas),
    }


def pool_vectors(conn: sqlite3.Connection, kind: str, split: str, embedder: Embedder) -> tuple[list[str], np.ndarray]:
    """A pool's texts and vectors (id order), using the stored vectors made by
    ``embedder`` and encoding the others in memory (nothing is written).
    Blocking: call it from a worker thread."""
    rows = Personas(conn).pool(kind, split)
    texts = [r.text for r in rows]
    stale = [i for i, r in enumerate(rows) if r.embedding is None or r.embedder != embedder.name]
    fresh = dict(zip(stale, embedder.encode([texts[i] for i in stale]))) if stale else {}
    if not rows:
        return texts, np.zeros((0, 0), dtype=np.float32)
    vecs = [fresh[i] if i in fresh else from_blob(r.embedding) for i, r in enumerate(rows)]
    return texts, np.vstack(vecs).astype(np.float32)
