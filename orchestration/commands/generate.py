"""aloe generate: grow preference trees (four role actors on the event bus)."""

from __future__ import annotations

import json
import sys
import time

import anyio
import structlog
from omegaconf import DictConfig

from ...agents import TreeRoles, check_reachable, make_roles, model_pool, role_backend_settings, role_settings
from ...environment import stable_int
from ...environment.store import PERSONAS_SQL, Store, finish_run, persona_from_row
from .._estimate import estimate_generation
from .._generate import ROLES, GenerationSettings, Progress, TreeJob, grow_trees
from .._progress import reporter, snapshot
from .._runs import find_or_create_run

HELP = "grow preference trees: user, inducer, preferred and rejected actors on the event bus"

log = structlog.get_logger(__name__)


async def _ensure_personas(store: Store, settings: GenerationSettings, seed: int) -> None:
    """With no personas of the split in the database, pair the shipped seed pools."""
    have = await store.fetchval("SELECT COUNT(*) FROM personas WHERE split = ?", (settings.split,))
    if have:
        return
    from ...environment.personas import SentenceEmbedder, ensure_seeds, pair_personas

    embedder = SentenceEmbedder()
    for kind in ("profile", "personality"):
        await ensure_seeds(store, kind, settings.split, embedder)
    await pair_personas(store, split=settings.split, target=settings.trees, seed=seed)
    log.info("personas.seeded", split=settings.split)


async def _select_trees(store: Store, run_id: int, settings: GenerationSettings, seed: int,
                        retry_failed: bool) -> tuple[list[TreeJob], int]:
    rows = await store.fetchall(PERSONAS_SQL + " WHERE p.split = ? ORDER BY p.id", (settings.split,))
    personas = [persona_from_row(r) for r in rows]
    if settings.shard_index is not None:
        i, n = settings.shard_index
        personas = [p for p in personas if stable_int(p.profile, p.personality) % n == i]
    personas.sort(key=lambda p: stable_int(seed, p.profile, p.personality))
    chosen = personas[: settings.trees]
    if len(chosen) < settings.trees:
        log.warning("generate.fewer_personas", wanted=settings.trees, available=len(chosen))
    now = time.time()
    rows_to_insert = [(run_id, p.id, settings.mode, settings.turns,
                       stable_int(seed, p.profile, p.personality, bits=31), now) for p in chosen]
    await store.write(lambda c: c.executemany(
        "INSERT OR IGNORE INTO trees (run_id, persona_id, mode, turns, seed, status, created_at)"
        " VALUES (?,?,?,?,?, 'pending', ?)", rows_to_insert))
    statuses = ("pending", "running", "failed") if retry_failed else ("pending", "running")
    by_persona = {p.id: p for p in chosen}
    trees = await store.fetchall(
        f"SELECT id, persona_id, seed, status FROM trees WHERE run_id = ? AND status IN ({','.join('?' * len(statuses))})"
        " ORDER BY id", (run_id, *statuses))
    jobs = [TreeJob(r["id"], by_persona[r["persona_id"]], r["seed"]) for r in trees if r["persona_id"] in by_persona]
    return jobs, len(chosen)


def validate(cfg: DictConfig) -> tuple[GenerationSettings, list[str]]:
    """Check every value before anything is opened or started (also run by ``-m``
    for every job of a sweep before the first one runs)."""
    settings = GenerationSettings.from_config(cfg.generation)
    roles_needed = list(ROLES) + (["preference_judge"] if settings.preference_check else [])
    for role in roles_needed:
        role_settings(cfg, role)
        role_backend_settings(cfg, role)
    role_settings(cfg, "preference_judge")  # grow_trees reads it even when the check is off
    return settings, roles_needed


async def generate(cfg: DictConfig) -> dict:
    settings, roles_needed = validate(cfg)  # every bad value fails before the database is touched
    endpoints = [role_backend_settings(cfg, role) for role in roles_needed]
    await anyio.to_thread.run_sync(check_reachable, endpoints)  # a server down now: one line, nothing written
    seed = int(cfg.seed)
    started = time.monotonic()
    async with Store.open(cfg.db) as store:
        run_id, resumed = await find_or_create_run(store, "generate", cfg, resume=bool(cfg.get("resume", True)))
        structlog.contextvars.bind_contextvars(run_id=run_id)
        await _ensure_personas(store, settings, seed)
        jobs, chosen = await _select_trees(store, run_id, settings, seed, bool(cfg.get("retry_failed")))
        log.info("generate.start", run_id=run_id, resumed=resumed, trees=chosen, to_grow=len(jobs))
        estimate = None
        if settings.estimate and jobs:  # what the run will ask of the models, before the first call
            limits = {role: role_settings(cfg, role).max_tokens for role in roles_needed}
            estimate = estimate_generation(settings, cfg.prompts, limits, [j.persona for j in jobs])
            print(f"aloe generate: {estimate.line()}", file=sys.stderr, flush=True)
        progress = Progress(trees_total=len(jobs))
        backends = []
        if jobs:
            async with model_pool(cfg, store, run_id=run_id) as pool:
                models = {role: await pool.for_role(cfg, role) for role in roles_needed}
                roles = TreeRoles.from_roles(make_roles(cfg, models))
                backends = pool.backends
                await grow_trees(store, run_id, jobs, roles, settings, cfg, progress,
                                 on_started=reporter(settings.progress, settings.progress_interval, backends))
        counts = {r[0]: r[1] for r in await store.fetchall(
            "SELECT status, COUNT(*) FROM trees WHERE run_id = ? GROUP BY status", (run_id,))}
        nodes = await store.fetchval("SELECT COUNT(*) FROM nodes n JOIN trees t ON t.id = n.tree_id WHERE t.run_id = ?",
                                     (run_id,))
        calls = await store.fetchone(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
            " COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END),0),"
            " COALESCE(SUM(error IS NOT NULL),0), COALESCE(SUM(cached),0) FROM llm_calls WHERE run_id = ?", (run_id,))
        stats = {
            "run_id": run_id, "resumed": resumed, "trees": sum(counts.values()),
            "trees_complete": counts.get("complete", 0), "trees_failed": counts.get("failed", 0),
            "nodes": nodes, "llm_calls": calls[0], "prompt_tokens": calls[1], "completion_tokens": calls[2],
            "retries": calls[3], "call_failures": calls[4], "cached_calls": calls[5],
            "wall_s": round(time.monotonic() - started, 2),
        }
        if estimate is not None:
            stats["estimate"] = estimate.as_dict()
        if progress.judge_total:
            stats["preference_agreement"] = round(progress.judge_agree / progress.judge_total, 4)
        if backends:
            stats["this_invocation"] = snapshot(progress, backends)
        status = "complete" if stats["trees_complete"] == stats["trees"] else "failed"
        await store.write(lambda c: finish_run(c, run_id, status, stats))
    stats["db"] = str(cfg.db)
    return stats


def run(cfg: DictConfig) -> int:
    stats = anyio.run(generate, cfg)
    print(json.dumps({k: v for k, v in stats.items() if k != "this_invocation"}))
    return 0 if stats["trees_complete"] == stats["trees"] else 3
