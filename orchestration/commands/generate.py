"""aloe generate: grow preference trees (four role actors on the event bus)."""

from __future__ import annotations

import json
import time

import anyio
import structlog
from omegaconf import DictConfig

from ...core import AloeError, the_lone_error
from ...environment import stable_int
from ...environment.store import PERSONAS_SQL, Store, finish_run, persona_from_row
from .._generate import ROLES, GenerationSettings, Progress, TreeJob, _concurrency, grow_trees
from .._models import check_reachable, make_roles, model_pool, role_backend_settings, role_sampling
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
    if settings.shard is not None:
        i, n = settings.shard
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


async def _stop_run(store: Store, run_id: int, exc: BaseException) -> BaseException:
    """The run could not go on (a database write was lost, a managed server died, a bug):
    mark it and its unfinished trees failed with the error named (resumable with
    retry_failed=true), and return the error to raise (a lone AloeError, with the next step)."""
    lone = the_lone_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
    error = lone if lone is not None else exc
    reason = f"run stopped: {error}" if isinstance(error, AloeError) else \
        f"run stopped: {type(error).__name__}: {error}"
    now = time.time()

    def mark(c) -> None:
        c.execute("UPDATE trees SET status = 'failed', error = ?, finished_at = ? WHERE run_id = ?"
                  " AND status IN ('pending', 'running')", (reason, now, run_id))
        c.execute("UPDATE runs SET status = 'failed', finished_at = ?, stats = ? WHERE id = ?",
                  (now, json.dumps({"run_id": run_id, "error": reason}), run_id))

    hint = "the run is marked failed; once the cause is fixed, re-run the same command with retry_failed=true"
    with anyio.CancelScope(shield=True):
        try:
            await store.write(mark, despite_failure=True)
        except AloeError as marking:  # the database itself is unusable (a full disk): nothing more to mark
            log.warning("generate.cannot_mark_run", run_id=run_id, error=str(marking))
            hint = "once the cause is fixed, re-run the same command to continue"
    log.warning("generate.stopped", run_id=run_id, error=reason)
    return error.with_hint(hint) if isinstance(error, AloeError) else exc


def validate(cfg: DictConfig) -> tuple[GenerationSettings, list[str]]:
    """Check every value before anything is opened or started (also run by ``-m``
    for every job of a sweep before the first one runs)."""
    settings = GenerationSettings.from_config(cfg.generation)
    roles_needed = list(ROLES) + (["preference_judge"] if settings.preference_check else [])
    for role in roles_needed:
        role_backend_settings(cfg, role)
        role_sampling(cfg, role)
        _concurrency(cfg, role)
    _concurrency(cfg, "preference_judge")  # grow_trees reads it even when the check is off
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
        progress = Progress(trees_total=len(jobs))
        backends = []
        if jobs:
            async with model_pool(cfg, store, run_id=run_id) as pool:
                models = {role: await pool.for_role(cfg, role) for role in roles_needed}
                roles = make_roles(cfg, models)
                backends = pool.backends
                try:
                    await grow_trees(store, run_id, jobs, roles, settings, cfg, progress,
                                     on_started=reporter(settings.progress, settings.progress_interval, backends))
                except Exception as exc:  # noqa: BLE001 -- re-raised; not Ctrl-C or cancellation (resumable as is)
                    raise await _stop_run(store, run_id, exc) from None
        counts = {r[0]: r[1] for r in await store.fetchall(
            "SELECT status, COUNT(*) FROM trees WHERE run_id = ? GROUP BY status", (run_id,))}
        nodes = await store.fetchval("SELECT COUNT(*) FROM nodes n JOIN trees t ON t.id = n.tree_id WHERE t.run_id = ?",
                                     (run_id,))
        calls = await store.fetchone(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
            " COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END),0),"
            " COALESCE(SUM(error IS NOT NULL),0), COALESCE(SUM(cached),0),"
            " COALESCE(SUM(finish_reason = 'length'),0) FROM llm_calls WHERE run_id = ?", (run_id,))
        stats = {
            "run_id": run_id, "resumed": resumed, "trees": sum(counts.values()),
            "trees_complete": counts.get("complete", 0), "trees_failed": counts.get("failed", 0),
            "nodes": nodes, "llm_calls": calls[0], "prompt_tokens": calls[1], "completion_tokens": calls[2],
            "retries": calls[3], "call_failures": calls[4], "cached_calls": calls[5], "truncated_calls": calls[6],
            "wall_s": round(time.monotonic() - started, 2),
        }
        if progress.judge_total:
            stats["preference_agreement"] = round(progress.judge_agree / progress.judge_total, 4)
        if backends:
            stats["this_invocation"] = snapshot(progress, backends)
        if store.failure is not None:  # a queued write (a call record, an event) was lost: fail loudly
            raise await _stop_run(store, run_id, store.failure)
        status = "complete" if stats["trees_complete"] == stats["trees"] else "failed"
        await store.write(lambda c: finish_run(c, run_id, status, stats))
    stats["db"] = str(cfg.db)
    return stats


def run(cfg: DictConfig) -> int:
    stats = anyio.run(generate, cfg)
    print(json.dumps({k: v for k, v in stats.items() if k != "this_invocation"}))
    return 0 if stats["trees_complete"] == stats["trees"] else 3
