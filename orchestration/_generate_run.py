"""One ``aloe generate``: hold the run, make sure there are personas, plan
the run's trees, grow them through the actors, and sum up.

The run is held with ``open_run`` (resume by identity, the lease, the end
marked ``complete``/``failed``/``interrupted`` with the stats and the wall
time), so a second process on the same run is refused before it writes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from omegaconf import DictConfig

from ..agents import (
    TreeRoles,
    check_reachable,
    make_roles,
    model_pool,
    role_backend_settings,
    role_settings,
    spend_limit_of,
)
from ..agents.gateway import SpendLimit, SpendStop
from ..core import AloeError, the_lone_error
from ..core.errors import BudgetReached
from ..environment import stable_int
from ..environment.store import ActiveRun, Calls, Personas, Store, Trees, open_run
from ._estimate import estimate_generation
from ._generate import GenerationSettings, Progress, TreeJob, grow_trees
from ._progress import limits, reporter, snapshot
from ._runs import identity, lease_settings, plain_config
from ._workers import grow_in_workers, worker_count

__all__ = ["ensure_personas", "generate_trees", "select_trees"]

log = structlog.get_logger(__name__)


async def ensure_personas(store: Store, settings: GenerationSettings, seed: int) -> None:
    """With no personas of the split in the database, pair the shipped seed pools."""
    if await store.read(lambda c: Personas(c).count(settings.split)):
        return
    from ..environment.personas import SentenceEmbedder, ensure_seeds, pair_personas

    embedder = SentenceEmbedder()
    for kind in ("profile", "personality"):
        await ensure_seeds(store, kind, settings.split, embedder)
    await pair_personas(store, split=settings.split, target=settings.trees, seed=seed)
    log.info("personas.seeded", split=settings.split)


async def select_trees(store: Store, run_id: int, settings: GenerationSettings, seed: int,
                       retry_failed: bool) -> tuple[list[TreeJob], int]:
    """Plan the run's trees (the first ``settings.trees`` personas of the split,
    of this shard, in an order fixed by the seed) and return the ones to grow
    now, with how many the run has."""
    personas = await store.read(lambda c: Personas(c).personas(settings.split))
    if settings.shard_index is not None:
        i, n = settings.shard_index
        personas = [p for p in personas if stable_int(p.profile, p.personality) % n == i]
    personas.sort(key=lambda p: stable_int(seed, p.profile, p.personality))
    chosen = personas[: settings.trees]
    if len(chosen) < settings.trees:
        log.warning("generate.fewer_personas", wanted=settings.trees, available=len(chosen))
    planned = [(p.id, settings.mode, settings.turns, stable_int(seed, p.profile, p.personality, bits=31))
               for p in chosen]
    await store.write(lambda c: Trees(c).add(run_id, planned))
    statuses = ("pending", "running", "failed") if retry_failed else ("pending", "running")
    by_persona = {p.id: p for p in chosen}
    trees = await store.read(lambda c: Trees(c).of_run(run_id, statuses))
    jobs = [TreeJob(t.id, by_persona[t.persona_id], t.seed) for t in trees if t.persona_id in by_persona]
    return jobs, len(chosen)


async def _summary(store: Store, run: ActiveRun, progress: Progress, backends: list[Any]) -> dict[str, Any]:
    """The run's totals (over every invocation) and this invocation's progress."""

    def counts(c) -> tuple[dict[str, int], int, Any, Any]:
        trees = Trees(c)
        return (trees.status_counts([run.id])[run.id], trees.node_counts(run.id).get(run.id, 0),
                Calls(c).totals(run.id), Calls(c).cost(run.id))

    by_status, nodes, calls, cost = await store.read(counts)
    stats: dict[str, Any] = {
        "run_id": run.id, "resumed": run.resumed, "trees": sum(by_status.values()),
        "trees_complete": by_status.get("complete", 0), "trees_failed": by_status.get("failed", 0),
        "nodes": nodes, "llm_calls": calls.calls, "prompt_tokens": calls.prompt_tokens,
        "completion_tokens": calls.completion_tokens, "retries": calls.retries, "call_failures": calls.failures,
        "cached_calls": calls.cached, "truncated_calls": calls.truncated, "wall_s": round(run.wall_s, 2),
        **cost.as_dict(),  # dollars: cost_usd (null = unknown), unpriced_calls, per role and model
    }
    if progress.judge_total:
        stats["preference_agreement"] = round(progress.judge_agree / progress.judge_total, 4)
    if backends:
        stats["this_invocation"] = snapshot(progress, backends)
        stats["limits"] = limits(backends)  # where each backend's in-flight limit ended (adaptive: moved)
    return stats


async def _stop_trees(store: Store, run_id: int, exc: BaseException) -> BaseException:
    """The run cannot go on (a database write was lost, a managed server died, a bug):
    mark its unfinished trees failed naming the error (``retry_failed=true`` grows them
    again) and return the error to raise (a lone ``AloeError`` with the next step);
    ``open_run`` then marks the run failed with it."""
    lone = the_lone_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
    error = lone if lone is not None else exc
    reason = f"run stopped: {error}" if isinstance(error, AloeError) else \
        f"run stopped: {type(error).__name__}: {error}"
    hint = "the run is marked failed; once the cause is fixed, re-run the same command with retry_failed=true"
    with anyio.CancelScope(shield=True):
        try:
            await store.write(lambda c: Trees(c).fail_unfinished(run_id, reason), despite_failure=True)
        except AloeError as marking:  # the database itself is unusable (a full disk): nothing more to mark
            log.warning("generate.cannot_mark_trees", run_id=run_id, error=str(marking))
            hint = "once the cause is fixed, re-run the same command to continue"
    log.warning("generate.stopped", run_id=run_id, error=reason)
    return error.with_hint(hint) if isinstance(error, AloeError) else error


async def generate_trees(cfg: DictConfig, settings: GenerationSettings, roles_needed: list[str]) -> dict[str, Any]:
    """Grow the trees of the run ``cfg`` names (``settings``: its checked
    ``generation`` group); returns the run's stats. A server that is down is
    one line before the database is opened."""
    lease = lease_settings(cfg)
    endpoints = [role_backend_settings(cfg, role) for role in roles_needed]
    await anyio.to_thread.run_sync(check_reachable, endpoints)  # a server down now: one line, nothing written
    if settings.engine == "ray":
        from ._ray import check_ray_address  # (Ray itself is imported only when the run uses it)

        await anyio.to_thread.run_sync(check_ray_address, settings.ray_address)
    seed = int(cfg.seed)
    config = plain_config(cfg)
    resume = bool(cfg.get("resume", True))
    async with Store.open(cfg.db) as store, \
            open_run(store, "generate", config, identity(config), resume=resume, lease=lease) as run:
        structlog.contextvars.bind_contextvars(run_id=run.id)
        await ensure_personas(store, settings, seed)
        jobs, chosen = await select_trees(store, run.id, settings, seed, bool(cfg.get("retry_failed")))
        log.info("generate.start", run_id=run.id, resumed=run.resumed, trees=chosen, to_grow=len(jobs))
        estimate = None
        if settings.estimate and jobs:  # what the run will ask of the models, before the first call
            max_tokens = {role: role_settings(cfg, role).max_tokens for role in roles_needed}
            estimate = estimate_generation(settings, cfg.prompts, max_tokens, [j.persona for j in jobs])
            print(f"aloe generate: {estimate.line()}", file=sys.stderr, flush=True)
        progress = Progress(trees_total=len(jobs))
        backends: list[Any] = []
        spend, limit = SpendStop(), None  # budget.usd
        batches: list[Any] = []
        workers = worker_count(settings, len(jobs), one_process=spend_limit_of(cfg) is not None)
        if settings.engine == "ray" and jobs:
            from ._ray import grow_on_ray

            try:
                await grow_on_ray(cfg, store, run.id, jobs, settings, roles_needed, progress)
            except Exception as exc:  # noqa: BLE001 -- re-raised, as below
                raise await _stop_trees(store, run.id, exc) from None
        elif workers > 1:
            log.info("generate.workers", workers=workers, trees=len(jobs))
            try:
                await grow_in_workers(cfg, store, run.id, jobs, settings, roles_needed, progress, workers)
            except Exception as exc:  # noqa: BLE001 -- re-raised, as below
                raise await _stop_trees(store, run.id, exc) from None
        elif jobs:
            async with model_pool(cfg, store, run_id=run.id) as pool:
                models = {role: await pool.for_role(cfg, role) for role in roles_needed}
                roles = TreeRoles.from_roles(make_roles(cfg, models))
                backends, limit, batches = pool.backends, pool.spend, pool.batch_models
                try:
                    async with _spending(store, run.id, limit) as spend:
                        await grow_trees(store, run.id, jobs, roles, settings, cfg, progress,
                                         on_started=reporter(settings.progress, settings.progress_interval, backends,
                                                             batches))
                    if store.failure is not None:  # a queued write (a call record, an event) was lost
                        raise store.failure
                except Exception as exc:  # noqa: BLE001 -- re-raised; not Ctrl-C or cancellation (resumable as is)
                    raise await _stop_trees(store, run.id, exc) from None
        stats = await _summary(store, run, progress, backends)
        if batches:
            stats["batch"] = {"waves": sum(m.waves for m in batches), "batches": len(
                {b for m in batches for b in m.batch_states})}
        if estimate is not None:
            stats["estimate"] = estimate.as_dict()
        if spend.reached and limit is not None:  # budget.usd: stopped as Ctrl-C stops a run, resumable as is
            stats["budget"] = {"usd": limit.usd, "spent_usd": round(limit.spent, 6), "reached": True}
            run.finish("interrupted", {**stats, "interrupted": True})
        else:
            run.finish("complete" if stats["trees_complete"] == stats["trees"] else "failed", stats)
    if spend.reached and limit is not None:
        raise BudgetReached(run.id, "generate", limit.spent, limit.usd)
    stats["db"] = str(cfg.db)
    return stats


@asynccontextmanager
async def _spending(store: Store, run_id: int, limit: SpendLimit | None) -> AsyncIterator[SpendStop]:
    """The body, stopped once ``budget.usd`` is reached (counting what the run spent before)."""
    if limit is None:
        yield SpendStop()
        return
    limit.spent = await store.read(lambda c: Calls(c).spent(run_id))
    async with limit.stop_when_reached() as stop:
        yield stop
