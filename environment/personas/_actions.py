"""The use cases of ``aloe personas`` that need no model: import files into
the pools, export them, measure them, pair them; and the pieces growth
shares with them (the embedder, the threshold, the reference pool, seeding,
pairing). Growing with the ``generator`` role is wired in orchestration
(it needs a model); the loop itself is ``grow_pool``.

Each action that writes is one run (kind 'personas') held with ``open_run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import structlog

from ...core.errors import ConfigError
from ..store import LeaseSettings, Personas, Store, open_readonly, open_run
from ._embed import SentenceEmbedder, embed, embedder_identity
from ._export import export_pool, pool_vectors
from ._filter import calibrate_threshold, describe_filter, similarity_stats
from ._grow import GrowthSettings
from ._jsonl import JsonlItems, read_items
from ._pairs import pair_personas
from ._pool import KINDS, ensure_seeds, import_items, load_pool

__all__ = ["PoolActionSettings", "RunIdentity", "export_files", "import_files", "pair_only", "pair_pools", "pool_stats",
           "reference_vectors", "seed_pools", "threshold_for"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PoolActionSettings:
    """The validated ``aloe personas`` config."""

    db: str
    seed: int
    action: str
    threshold: float
    keep_rate: float | None
    targets: dict[str, int]
    pairs: int
    eval_pairs: int
    batch: int
    shots: int
    parallel: int
    max_iterations: int
    bottleneck_window: int
    bottleneck_min: int
    seeds: bool
    check_eval: bool
    min_words: int
    warn_keep_rate: float
    embedder_model: str | None
    embedder_batch: int
    embedder_device: str
    embedder_threads: int
    stats_thresholds: tuple[float, ...]
    stats_keep_rates: tuple[float, ...]
    import_files: dict[str, str]
    import_split: str
    filter: bool
    export_dir: str | None
    export_split: str

    def growth(self, kind: str, threshold: float) -> GrowthSettings:
        return GrowthSettings(target=self.targets[kind], threshold=threshold, batch=self.batch, shots=self.shots,
                              parallel=self.parallel, bottleneck_window=self.bottleneck_window,
                              bottleneck_min=self.bottleneck_min, max_iterations=self.max_iterations,
                              seed=self.seed, warn_keep_rate=self.warn_keep_rate)

    def embedder(self) -> SentenceEmbedder:
        return SentenceEmbedder(self.embedder_model, batch_size=self.embedder_batch, device=self.embedder_device)


@dataclass(frozen=True)
class RunIdentity:
    """What the ``runs`` row of an action records: the resolved config and its identity."""

    config: Any
    identity: str
    lease: LeaseSettings = field(default_factory=LeaseSettings)


async def threshold_for(s: PoolActionSettings, kind: str, vectors: np.ndarray) -> float:
    """The configured threshold, or the one calibrated on ``vectors`` from keep_rate."""
    if s.keep_rate is None:
        return s.threshold
    if len(vectors) < 2:
        raise ConfigError("personas.keep_rate", s.keep_rate, f"null while the {kind} pool has fewer than 2 items "
                          "to calibrate on (set personas.threshold instead)")
    t = await anyio.to_thread.run_sync(calibrate_threshold, vectors, s.keep_rate)
    log.info("threshold calibrated", kind=kind, keep_rate=s.keep_rate, threshold=t, reference=len(vectors))
    return t


async def reference_vectors(store: Store, s: PoolActionSettings, kind: str, split: str, embedder,
                            limiter) -> np.ndarray | None:
    """The eval pool's vectors, which train items must not resemble (``personas.check_eval``)."""
    if split != "train" or not s.check_eval:
        return None
    ref = await load_pool(store, kind, "eval", embedder, limiter)
    return ref.vectors if len(ref) else None


async def import_files(s: PoolActionSettings, files: dict[str, JsonlItems], record: RunIdentity) -> dict:
    """Add parsed files to the pools (each through the filter unless ``filter`` is off).
    The summary's ``notices`` say what a user should know: a line that held
    several values, a filter that dropped more than half of a file."""
    embedder, limiter = s.embedder(), anyio.CapacityLimiter(s.embedder_threads)
    items = {kind: list(f.items) for kind, f in files.items()}
    notices = [n for f in files.values() if (n := f.notice()) is not None]
    for f in files.values():
        if f.shared_lines:
            log.warning(f.notice(), file=f.path, shared_lines=[line for line, _ in f.shared_lines])
    summary: dict[str, Any] = {"action": "import", "profiles_kept": 0, "personalities_kept": 0,
                               "embedder": await anyio.to_thread.run_sync(embedder_identity, embedder)}
    async with Store.open(s.db) as store:
        # embed and calibrate everything first: a bad keep_rate leaves no run behind
        plans = {}
        for kind, texts in items.items():
            pool = await load_pool(store, kind, s.import_split, embedder, limiter)
            vecs = await embed(embedder, texts, limiter)
            threshold = None
            if s.filter:
                threshold = await threshold_for(s, kind, np.vstack([pool.vectors, vecs]) if len(pool) else vecs)
            plans[kind] = (vecs, threshold, await reference_vectors(store, s, kind, s.import_split, embedder, limiter))
        summary["filter"] = describe_filter(s.filter, s.threshold, s.keep_rate, {k: p[1] for k, p in plans.items()})
        async with open_run(store, "personas", record.config, record.identity, resume=False,
                            lease=record.lease, exclusive=True) as run:
            for kind, texts in items.items():
                vecs, threshold, reference = plans[kind]
                report = await import_items(
                    store, kind, texts, embedder, split=s.import_split, threshold=threshold, vectors=vecs,
                    reference=reference, run_id=run.id, limiter=limiter, warn_keep_rate=s.warn_keep_rate)
                plural = "profiles" if kind == "profile" else "personalities"
                summary[f"{plural}_kept"] = report.kept
                summary[plural] = report.as_dict()
                if (notice := report.notice(s.warn_keep_rate)) is not None:
                    notices.append(notice)
            summary["notices"] = notices
            run.finish("complete", summary)
    return summary


def export_files(s: PoolActionSettings) -> dict:
    """Write the pools and personas of ``export.split`` to ``export.dir``."""
    conn = open_readonly(s.db)
    try:
        counts = export_pool(conn, s.export_dir, s.export_split)
    finally:
        conn.close()
    return {"action": "export", "dir": str(Path(s.export_dir)), "split": s.export_split, **counts}


def pool_stats(s: PoolActionSettings) -> dict:
    """The similarity distribution of the pools (or of the files to import)."""
    embedder = s.embedder()
    out: dict[str, Any] = {"action": "stats", "embedder": embedder_identity(embedder), "threshold": s.threshold}
    if s.import_files:
        for kind, path in s.import_files.items():
            texts = read_items(path)
            out[kind] = {"file": path, **similarity_stats(embedder.encode(texts), s.stats_thresholds,
                                                             s.stats_keep_rates)}
        return out
    conn = open_readonly(s.db)
    try:
        for kind in KINDS:
            out[kind] = {}
            for split in ("train", "eval"):
                _, vecs = pool_vectors(conn, kind, split, embedder)
                out[kind][split] = similarity_stats(vecs, s.stats_thresholds, s.stats_keep_rates)
        out["personas"] = {split: Personas(conn).count(split) for split in ("train", "eval")}
    finally:
        conn.close()
    return out


async def seed_pools(store: Store, s: PoolActionSettings, embedder, limiter, run_id: int) -> dict[str, int]:
    """Put the shipped seeds into every empty pool (with ``personas.seeds``)."""
    added = {}
    if s.seeds:
        for kind in KINDS:
            for split in ("train", "eval"):
                added[f"{kind}/{split}"] = await ensure_seeds(store, kind, split, embedder, limiter, run_id=run_id)
    return added


async def pair_pools(store: Store, s: PoolActionSettings) -> dict:
    train = await pair_personas(store, split="train", target=s.pairs, seed=s.seed)
    evaluation = await pair_personas(store, split="eval", target=s.eval_pairs, seed=s.seed)
    return {"train": train.as_dict(), "eval": evaluation.as_dict()}


async def pair_only(s: PoolActionSettings, record: RunIdentity) -> dict:
    """Top the personas of both splits up to ``personas.pairs`` / ``personas.eval_pairs``."""
    async with Store.open(s.db) as store, open_run(store, "personas", record.config, record.identity,
                                                   resume=False, lease=record.lease, exclusive=True) as run:
        summary = {"action": "pair", "pairs": await pair_pools(store, s)}
        run.finish("complete", summary)
    return summary
