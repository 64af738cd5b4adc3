"""``aloe personas`` growing with the ``generator`` role: the model side of
pool growth (the loop is ``environment.personas.grow_pool``; the other
actions need no model and live in ``environment.personas``).

Growing is resumable: each iteration is committed with its items, and a new
run continues from the stored pools; a SIGINT or SIGTERM stops it cleanly
(the run is marked interrupted), and even a SIGKILL loses at most the
iterations in flight.
"""

from __future__ import annotations

from typing import Any

import anyio
from omegaconf import DictConfig, OmegaConf

from ..agents import PersonaGenerator, check_reachable, open_models, role_backend_settings, role_sampling
from ..core import ConfigError, lone_error
from ..environment.personas import (
    KINDS,
    PoolActionSettings,
    RunIdentity,
    describe_filter,
    embedder_identity,
    grow_pool,
    load_pool,
    pair_pools,
    reference_vectors,
    seed_pools,
    threshold_for,
)
from ..environment.store import Personas, Store, open_run

__all__ = ["grow_personas"]


async def grow_personas(cfg: DictConfig, s: PoolActionSettings, record: RunIdentity) -> dict[str, Any]:
    """Seed (with ``personas.seeds``), grow both train pools to their targets, pair them."""
    embedder, limiter = s.embedder(), anyio.CapacityLimiter(s.embedder_threads)
    sampling = role_sampling(cfg, "generator")  # validate before anything is written
    generator = role_backend_settings(cfg, "generator")  # (a bad backend value or a missing API key too)
    await anyio.to_thread.run_sync(check_reachable, [generator])  # a server down now: nothing written
    prompts = OmegaConf.to_container(cfg.prompts, resolve=True) if cfg.get("prompts") else {}
    async with Store.open(s.db) as store, open_run(store, "personas", record.config, record.identity,
                                                   resume=False, lease=record.lease, exclusive=True) as run:
        summary: dict[str, Any] = {"action": "grow", "run_id": run.id,
                                   "seeded": await seed_pools(store, s, embedder, limiter, run.id),
                                   "embedder": await anyio.to_thread.run_sync(embedder_identity, embedder)}
        plans = {}
        for kind in KINDS:
            pool = await load_pool(store, kind, "train", embedder, limiter)
            if len(pool) < s.targets[kind]:
                if not len(pool):
                    raise ConfigError("personas.seeds", s.seeds, f"true (the {kind} pool is empty; import or seed it)")
                plans[kind] = (await threshold_for(s, kind, pool.vectors),
                               await reference_vectors(store, s, kind, "train", embedder, limiter))
        summary["filter"] = describe_filter(True, s.threshold, s.keep_rate, {k: p[0] for k, p in plans.items()})
        if plans:
            async with open_models(cfg, store, ["generator"], run_id=run.id) as models:
                generate = PersonaGenerator(models["generator"], prompts, sampling, min_words=s.min_words,
                                            run_id=run.id)
                reports = {}

                async def grow(kind: str) -> None:
                    threshold, reference = plans[kind]
                    reports[kind] = await grow_pool(store, kind, generate, embedder, s.growth(kind, threshold),
                                                    run_id=run.id, reference=reference, limiter=limiter)

                with lone_error():
                    async with anyio.create_task_group() as tg:
                        for kind in plans:
                            tg.start_soon(grow, kind)
            for kind, report in reports.items():
                summary[kind] = report.as_dict()
            summary["notices"] = [r.outcome for r in reports.values() if r.warn]
        sizes = await store.read(lambda c: {kind: Personas(c).count_items(kind, "train") for kind in KINDS})
        summary["profiles"] = sizes["profile"]
        summary["personalities"] = sizes["personality"]
        summary["pairs"] = await pair_pools(store, s)
        run.finish("complete", summary)
    return summary
