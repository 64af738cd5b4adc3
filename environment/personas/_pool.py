"""The persona pools in the store: items with their cached embeddings.

A pool is the set of ``persona_items`` rows of one kind ('profile' or
'personality') and one split ('train' or 'eval'), in id order. Every item's
embedding is computed once and stored beside it (``embedding`` float32 BLOB,
``embedder`` the model name); an item whose vector is missing or came from
another embedder is encoded again once, and the new vector is stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import anyio
import numpy as np
import structlog

from ...core.errors import InputError
from ..store import Personas, Store
from ._embed import Embedder, embed, from_blob, to_blob
from ._filter import filter_candidates
from ._jsonl import read_items

__all__ = ["KINDS", "SPLITS", "ImportReport", "Pool", "add_items", "ensure_seeds", "import_items", "load_pool", "seed_items"]

log = structlog.get_logger(__name__)

KINDS = ("profile", "personality")
SPLITS = ("train", "eval")

_SEED_FILES = {
    ("profile", "train"): "profiles.jsonl",
    ("personality", "train"): "personalities.jsonl",
    ("profile", "eval"): "eval_profiles.jsonl",
    ("personality", "eval"): "eval_personalities.jsonl",
}


def _check(kind: str, split: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def seed_items(kind: str, split: str = "train") -> list[str]:
    """The hand-written seed examples shipped with aloesim (20 per train pool,
    5 per eval pool)."""
    _check(kind, split)
    ref = resources.files("aloesim.environment.personas").joinpath("seeds", _SEED_FILES[(kind, split)])
    with resources.as_file(ref) as path:
        return read_items(path)


@dataclass
class Pool:
    """One pool in memory: ids, texts, the iteration that produced each item
    (None for seeds and imports) and the embedding matrix, row i = item i."""

    kind: str
    split: str
    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    iterations: list[int | None] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, ids: Sequence[int], texts: Sequence[str], vectors: np.ndarray, iteration: int | None) -> None:
        if not len(ids):
            return
        self.ids += list(ids)
        self.texts += list(texts)
        self.iterations += [iteration] * len(ids)
        self.vectors = np.asarray(vectors, dtype=np.float32) if self.vectors.size == 0 else np.vstack([self.vectors, vectors])


async def load_pool(store: Store, kind: str, split: str, embedder: Embedder,
                    limiter: anyio.CapacityLimiter | None = None) -> Pool:
    """Read a pool with its vectors; encode (once) and store the vectors that
    are missing or were made by a different embedder."""
    _check(kind, split)
    rows = await store.read(lambda c: Personas(c).pool(kind, split))
    pool = Pool(kind, split)
    if not rows:
        return pool
    stale = [i for i, r in enumerate(rows) if r.embedding is None or r.embedder != embedder.name]
    fresh: dict[int, np.ndarray] = {}
    if stale:
        vecs = await embed(embedder, [rows[i].text for i in stale], limiter)
        updates = [(rows[i].id, to_blob(v)) for i, v in zip(stale, vecs)]
        await store.write(lambda c: Personas(c).set_embeddings(updates, embedder.name))
        fresh = dict(zip(stale, vecs))
        log.info("persona embeddings computed", kind=kind, split=split, count=len(stale), embedder=embedder.name)
    vectors = [fresh[i] if i in fresh else from_blob(r.embedding) for i, r in enumerate(rows)]
    pool.ids = [r.id for r in rows]
    pool.texts = [r.text for r in rows]
    pool.iterations = [r.iteration for r in rows]
    pool.vectors = np.vstack(vectors).astype(np.float32)
    return pool


def add_items(conn: sqlite3.Connection, kind: str, split: str, texts: Sequence[str], vectors: np.ndarray,
              embedder: str, *, source: str, run_id: int | None = None, iteration: int | None = None) -> list[int | None]:
    """Insert items (a write function: run it inside ``store.write``). An item
    already in the pool is skipped; its slot in the returned ids is None."""
    return Personas(conn).add_items(kind, split, texts, [to_blob(v) for v in vectors], embedder, source=source,
                                    run_id=run_id, iteration=iteration)


async def ensure_seeds(store: Store, kind: str, split: str, embedder: Embedder,
                       limiter: anyio.CapacityLimiter | None = None, *, run_id: int | None = None) -> int:
    """Put the shipped seed examples into an empty pool; returns how many were added."""
    if await store.read(lambda c: Personas(c).count_items(kind, split)):
        return 0
    texts = seed_items(kind, split)
    vecs = await embed(embedder, texts, limiter)
    ids = await store.write(lambda c: add_items(c, kind, split, texts, vecs, embedder.name, source="seed", run_id=run_id))
    return sum(i is not None for i in ids)


@dataclass(frozen=True)
class ImportReport:
    """What an import did to one pool."""

    kind: str
    split: str
    read: int
    kept: int
    dropped_similar: int
    dropped_duplicate: int
    threshold: float | None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "split": self.split, "read": self.read, "kept": self.kept,
                "dropped_similar": self.dropped_similar, "dropped_duplicate": self.dropped_duplicate,
                "threshold": self.threshold}

    def notice(self, warn_keep_rate: float = 0.0) -> str | None:
        """A sentence when the similarity filter dropped more than half of the
        items (or kept less than ``warn_keep_rate`` of them), with the fix."""
        if self.threshold is None or not (self.dropped_similar * 2 > self.read
                                          or self.kept < warn_keep_rate * self.read):
            return None
        key = "import.profiles" if self.kind == "profile" else "import.personalities"
        return (f"{self.kind} import ({self.split}): the similarity filter dropped {self.dropped_similar} of "
                f"{self.read} items as within {self.threshold:g} cosine of another (kept {self.kept}); to keep "
                "them, import with filter=false (drops exact duplicates only) or calibrate the threshold with "
                f"personas.keep_rate=0.9; `aloe personas personas.action=stats {key}=FILE` shows what each "
                "threshold keeps")


async def import_items(store: Store, kind: str, texts: Sequence[str], embedder: Embedder, *, split: str = "train",
                       threshold: float | None = 0.6, reference: np.ndarray | None = None, run_id: int | None = None,
                       limiter: anyio.CapacityLimiter | None = None, warn_keep_rate: float = 0.05,
                       vectors: np.ndarray | None = None) -> ImportReport:
    """Add already-parsed ``texts`` to a pool in one transaction. With a
    threshold they pass the similarity filter (against the pool, earlier kept
    items and ``reference``); with ``threshold=None`` only exact duplicates are
    dropped. ``vectors`` are the texts' embeddings if already computed."""
    _check(kind, split)
    if not texts:
        raise InputError(f"<{kind} items>", "nothing to import")
    pool = await load_pool(store, kind, split, embedder, limiter)
    vecs = await embed(embedder, texts, limiter) if vectors is None else np.asarray(vectors, dtype=np.float32)
    known = set(pool.texts)
    if threshold is not None:
        result = filter_candidates(vecs, pool.vectors if len(pool) else None, threshold, reference=reference)
        chosen = result.kept
    else:
        chosen, seen = [], set(known)
        for i, text in enumerate(texts):
            if text not in seen:
                seen.add(text)
                chosen.append(i)
    ids = await store.write(lambda c: add_items(
        c, kind, split, [texts[i] for i in chosen], vecs[chosen], embedder.name, source="imported", run_id=run_id))
    kept = sum(i is not None for i in ids)
    similar = len(texts) - len(chosen) if threshold is not None else 0
    report = ImportReport(kind, split, len(texts), kept, similar, len(texts) - similar - kept, threshold)
    log.info("persona import", **report.as_dict())
    if (notice := report.notice(warn_keep_rate)) is not None:
        log.warning(notice, **report.as_dict())
    return report


def warn_if_collapsing(kind: str, candidates: int, kept: int, threshold: float, warn_keep_rate: float) -> bool:
    """Log a warning when the filter rejected nearly everything; True if it did."""
    if candidates >= 10 and kept < warn_keep_rate * candidates:
        log.warning(
            "similarity filter rejected nearly everything; the threshold is probably too low for this embedder",
            kind=kind, candidates=candidates, kept=kept, threshold=threshold,
            hint="see `aloe personas personas.action=stats` or set personas.keep_rate",
        )
        return True
    return False
