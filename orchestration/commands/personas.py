"""``aloe personas``: grow, import, export and inspect the persona pools.

    aloe personas db=PATH personas.target_profiles=N personas.target_personalities=M personas.pairs=K
    aloe personas db=PATH import.profiles=FILE import.personalities=FILE personas.threshold=T
    aloe personas db=PATH export.dir=DIR
    aloe personas db=PATH personas.action=stats               # similarity distribution of the pools
    aloe personas personas.action=stats import.profiles=FILE  # ... of a file, before importing it

``personas.action=auto`` (the default) imports when ``import.*`` is set,
exports when ``export.dir`` is set, and otherwise grows both pools with the
``generator`` role and pairs them. Every action prints one line of JSON.
Growing is resumable: each iteration is committed with its items, and a
new run continues from the stored pools. SIGINT/SIGTERM stop growing cleanly
(the run is marked interrupted, exit code 130); even a SIGKILL loses at most
the iterations in flight.
"""

from __future__ import annotations

import hashlib
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import anyio
import numpy as np
import structlog
from omegaconf import DictConfig, OmegaConf

from ...core import ConfigError, lone_error, to_settings
from ...environment.personas import (
    KINDS,
    GrowthSettings,
    SentenceEmbedder,
    calibrate_threshold,
    describe_filter,
    embed,
    embedder_identity,
    ensure_seeds,
    export_pool,
    grow_pool,
    import_items,
    load_pool,
    pair_personas,
    pool_vectors,
    read_items,
    similarity_stats,
)
from ...environment.store import Store, connect, now
from .._schemas import ImportSettings, PersonasConfig

HELP = "grow, import, export and inspect the persona pools (profiles x personalities)"

log = structlog.get_logger(__name__)



# -- config ------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
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


def settings(cfg: DictConfig) -> Settings:
    """Validate the config; raises ConfigError naming the first bad key."""
    root: PersonasConfig = to_settings(cfg, PersonasConfig)
    imp: ImportSettings = to_settings(cfg.get("import"), ImportSettings, "import")
    p = root.personas
    files = {"profile": imp.profiles, "personality": imp.personalities}
    s = Settings(
        db=root.db,
        seed=root.seed,
        action=p.action,
        threshold=p.threshold,
        keep_rate=p.keep_rate,
        targets={"profile": p.target_profiles, "personality": p.target_personalities},
        pairs=p.pairs,
        eval_pairs=p.eval_pairs,
        batch=p.batch,
        shots=p.shots,
        parallel=p.parallel,
        max_iterations=p.max_iterations,
        bottleneck_window=p.bottleneck.window,
        bottleneck_min=p.bottleneck.min_added,
        seeds=p.seeds,
        check_eval=p.check_eval,
        min_words=p.min_words,
        warn_keep_rate=p.warn_keep_rate,
        embedder_model=p.embedder.model,
        embedder_batch=p.embedder.batch_size,
        embedder_device=p.embedder.device,
        embedder_threads=p.embedder.threads,
        stats_thresholds=tuple(p.stats.thresholds),
        stats_keep_rates=tuple(p.stats.keep_rates),
        import_files={k: v for k, v in files.items() if v is not None},
        import_split=imp.split,
        filter=root.filter,
        export_dir=root.export.dir,
        export_split=root.export.split,
    )
    if s.action == "import" and not s.import_files:
        raise ConfigError("import.profiles", None, "a JSONL file (import.profiles and/or import.personalities)")
    if s.action == "export" and s.export_dir is None:
        raise ConfigError("export.dir", None, "a directory to export to")
    return s


def resolve_action(s: Settings) -> str:
    if s.action != "auto":
        return s.action
    if s.import_files:
        return "import"
    if s.export_dir is not None:
        return "export"
    return "grow"


# -- entry point ---------------------------------------------------------------

def run(cfg: DictConfig) -> int:
    """Do the configured action and print its one-line JSON summary."""
    s = settings(cfg)
    action = resolve_action(s)
    with lone_error():  # an error inside the store's task group surfaces as itself
        if action == "import":
            # parse every file fully before the database is opened: a bad file changes nothing
            items = {kind: read_items(path) for kind, path in s.import_files.items()}
            summary = anyio.run(_import, s, items, _config_json(cfg))
        elif action == "export":
            summary = _export(s)
        elif action == "stats":
            summary = _stats(s)
        elif action == "pair":
            summary = anyio.run(_pair_only, s, _config_json(cfg))
        else:
            summary = anyio.run(_interruptible, _grow, cfg, s, _config_json(cfg))
    if summary is None:  # SIGINT / SIGTERM: what was committed stays, the run is marked interrupted
        print(json.dumps({"action": action, "interrupted": True}))
        return 130
    print(json.dumps(summary, ensure_ascii=False))
    return 0


async def _interruptible(fn, *args) -> Any:
    """``await fn(*args)``, cancelled cleanly on SIGINT or SIGTERM (returns None then)."""
    result = None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for signum in signals:
                    log.warning("interrupted: committed iterations are kept; run the command again to continue",
                                signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(watch)
            result = await fn(*args)
            tg.cancel_scope.cancel()
    return result


def _config_json(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)


def _embedder(s: Settings) -> SentenceEmbedder:
    return SentenceEmbedder(s.embedder_model, batch_size=s.embedder_batch, device=s.embedder_device)


# -- runs table ------------------------------------------------------------------

async def _start_run(store: Store, config: str) -> int:
    digest = hashlib.sha256(config.encode()).hexdigest()
    return await store.write(lambda c: c.execute(
        "INSERT INTO runs (kind, config, config_hash, status, started_at) VALUES ('personas', ?, ?, 'running', ?)",
        (config, digest, now())).lastrowid)


async def _finish_run(store: Store, run_id: int, status: str, stats: dict | None) -> None:
    payload = json.dumps(stats, default=str) if stats is not None else None
    with anyio.CancelScope(shield=True):
        await store.write(lambda c: c.execute(
            "UPDATE runs SET status = ?, finished_at = ?, stats = ? WHERE id = ?", (status, now(), payload, run_id)))


class _Run:
    """Records one command in ``runs``: complete, failed or interrupted."""

    def __init__(self, store: Store, config: str) -> None:
        self.store, self.config, self.id, self.stats = store, config, 0, None

    async def __aenter__(self) -> Self:
        self.id = await _start_run(self.store, self.config)
        return self

    async def __aexit__(self, et, exc, tb) -> None:
        if et is None:
            status = "complete"
        elif issubclass(et, (KeyboardInterrupt, anyio.get_cancelled_exc_class())):
            status = "interrupted"
        else:
            status = "failed"
        if status == "complete":
            stats = self.stats
        elif status == "interrupted":
            stats = {"interrupted": True}
        else:
            stats = {"error": str(exc)[:500]}
        await _finish_run(self.store, self.id, status, stats)


# -- actions ---------------------------------------------------------------------

async def _threshold(s: Settings, kind: str, vectors: np.ndarray) -> float:
    """The configured threshold, or the one calibrated on ``vectors`` from keep_rate."""
    if s.keep_rate is None:
        return s.threshold
    if len(vectors) < 2:
        raise ConfigError("personas.keep_rate", s.keep_rate, f"null while the {kind} pool has fewer than 2 items "
                          "to calibrate on (set personas.threshold instead)")
    t = await anyio.to_thread.run_sync(calibrate_threshold, vectors, s.keep_rate)
    log.info("threshold calibrated", kind=kind, keep_rate=s.keep_rate, threshold=t, reference=len(vectors))
    return t


async def _reference(store: Store, s: Settings, kind: str, split: str, embedder, limiter) -> np.ndarray | None:
    if split != "train" or not s.check_eval:
        return None
    ref = await load_pool(store, kind, "eval", embedder, limiter)
    return ref.vectors if len(ref) else None


async def _import(s: Settings, items: dict[str, list[str]], config: str) -> dict:
    embedder, limiter = _embedder(s), anyio.CapacityLimiter(s.embedder_threads)
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
                threshold = await _threshold(s, kind, np.vstack([pool.vectors, vecs]) if len(pool) else vecs)
            plans[kind] = (vecs, threshold, await _reference(store, s, kind, s.import_split, embedder, limiter))
        summary["filter"] = describe_filter(s.filter, s.threshold, s.keep_rate, {k: p[1] for k, p in plans.items()})
        async with _Run(store, config) as run:
            for kind, texts in items.items():
                vecs, threshold, reference = plans[kind]
                report = await import_items(
                    store, kind, texts, embedder, split=s.import_split, threshold=threshold, vectors=vecs,
                    reference=reference, run_id=run.id, limiter=limiter, warn_keep_rate=s.warn_keep_rate)
                plural = "profiles" if kind == "profile" else "personalities"
                summary[f"{plural}_kept"] = report.kept
                summary[plural] = report.as_dict()
            run.stats = summary
    return summary


def _export(s: Settings) -> dict:
    conn = connect(s.db, create=False, readonly=True)
    try:
        counts = export_pool(conn, s.export_dir, s.export_split)
    finally:
        conn.close()
    return {"action": "export", "dir": str(Path(s.export_dir)), "split": s.export_split, **counts}


def _stats(s: Settings) -> dict:
    embedder = _embedder(s)
    out: dict[str, Any] = {"action": "stats", "embedder": embedder_identity(embedder), "threshold": s.threshold}
    if s.import_files:
        for kind, path in s.import_files.items():
            texts = read_items(path)
            out[kind] = {"file": path, **similarity_stats(embedder.encode(texts), s.stats_thresholds,
                                                             s.stats_keep_rates)}
        return out
    conn = connect(s.db, create=False, readonly=True)
    try:
        for kind in KINDS:
            out[kind] = {}
            for split in ("train", "eval"):
                _, vecs = pool_vectors(conn, kind, split, embedder)
                out[kind][split] = similarity_stats(vecs, s.stats_thresholds, s.stats_keep_rates)
        out["personas"] = {split: conn.execute("SELECT COUNT(*) FROM personas WHERE split = ?", (split,)).fetchone()[0]
                           for split in ("train", "eval")}
    finally:
        conn.close()
    return out


async def _seed(store: Store, s: Settings, embedder, limiter, run_id: int) -> dict[str, int]:
    added = {}
    if s.seeds:
        for kind in KINDS:
            for split in ("train", "eval"):
                added[f"{kind}/{split}"] = await ensure_seeds(store, kind, split, embedder, limiter, run_id=run_id)
    return added


async def _pair(store: Store, s: Settings) -> dict:
    train = await pair_personas(store, split="train", target=s.pairs, seed=s.seed)
    evaluation = await pair_personas(store, split="eval", target=s.eval_pairs, seed=s.seed)
    return {"train": train.as_dict(), "eval": evaluation.as_dict()}


async def _pair_only(s: Settings, config: str) -> dict:
    async with Store.open(s.db) as store, _Run(store, config) as run:
        summary = {"action": "pair", "pairs": await _pair(store, s)}
        run.stats = summary
    return summary


async def _grow(cfg: DictConfig, s: Settings, config: str) -> dict:
    from ...agents import PersonaGenerator, check_reachable, open_models, role_backend_settings, role_sampling

    embedder, limiter = _embedder(s), anyio.CapacityLimiter(s.embedder_threads)
    sampling = role_sampling(cfg, "generator")  # validate before anything is written
    generator = role_backend_settings(cfg, "generator")  # (a bad backend value or a missing API key too)
    await anyio.to_thread.run_sync(check_reachable, [generator])  # a server down now: nothing written
    prompts = OmegaConf.to_container(cfg.prompts, resolve=True) if cfg.get("prompts") else {}
    async with Store.open(s.db) as store, _Run(store, config) as run:
        summary: dict[str, Any] = {"action": "grow", "run_id": run.id, "seeded": await _seed(store, s, embedder,
                                                                                              limiter, run.id),
                                   "embedder": await anyio.to_thread.run_sync(embedder_identity, embedder)}
        plans = {}
        for kind in KINDS:
            pool = await load_pool(store, kind, "train", embedder, limiter)
            if len(pool) < s.targets[kind]:
                if not len(pool):
                    raise ConfigError("personas.seeds", s.seeds, f"true (the {kind} pool is empty; import or seed it)")
                plans[kind] = (await _threshold(s, kind, pool.vectors),
                               await _reference(store, s, kind, "train", embedder, limiter))
        summary["filter"] = describe_filter(True, s.threshold, s.keep_rate, {k: p[0] for k, p in plans.items()})
        if plans:
            async with open_models(cfg, store, ["generator"], run_id=run.id) as models:
                generator = PersonaGenerator(models["generator"], prompts, sampling, min_words=s.min_words,
                                             run_id=run.id)
                reports = {}

                async def grow(kind: str) -> None:
                    threshold, reference = plans[kind]
                    reports[kind] = await grow_pool(store, kind, generator, embedder, s.growth(kind, threshold),
                                                    run_id=run.id, reference=reference, limiter=limiter)

                with lone_error():
                    async with anyio.create_task_group() as tg:
                        for kind in plans:
                            tg.start_soon(grow, kind)
            for kind, report in reports.items():
                summary[kind] = report.as_dict()
        sizes = {kind: await store.fetchval("SELECT COUNT(*) FROM persona_items WHERE kind = ? AND split = 'train'",
                                            (kind,)) for kind in KINDS}
        summary["profiles"] = sizes["profile"]
        summary["personalities"] = sizes["personality"]
        summary["pairs"] = await _pair(store, s)
        run.stats = summary
    return summary
