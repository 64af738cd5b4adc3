"""Every core of one machine for ``aloe evaluate``: ``evaluation.workers=N``
runs an evaluation's cases' conversations in N worker processes, on
disjoint cases, into one database.

The same machinery as ``generation.workers`` (``_workers``: the forkserver,
a dead worker started again on its unfinished cases, a worker whose parent
is gone stops itself). The parent holds the run (``open_run``: identity,
lease, heartbeat), creates the evaluation and its cases, starts the managed
servers once (its model pool: the user, the judge and the evaluated model's
endpoint; every worker is given their URLs) and deals the unfinished cases
out round-robin. A worker opens its own pool on those servers and runs its
cases turn by turn exactly as one process does (user, evaluated model,
judge; every turn stored as soon as it is judged), under the parent's run
id, so resume works as it always has. The judge check runs in the parent
beside the workers; the second judge and the report run there once every
case is done. ``model=hf`` (a checkpoint loaded in process) and
``budget.usd`` (one spend counter) keep to one process.

``evaluation.engine=ray`` runs the shares as Ray tasks instead (``_ray``'s
route, as for generate): each share of cases is cut into a shard database
(the run, its evaluation, the share's cases and their stored turns), run
there by the same ``run_case_share`` and merged back into ``db`` when done
(a case takes the shard's state: complete or failed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import structlog

from ..agents import ModelPool, make_roles, model_pool
from ..agents.gateway import BackendSettings
from ..core import to_settings
from ..environment.store import CaseRecord, Evaluations, Store
from ..evaluation import BenchmarkSpec, CasesRunner, EvaluationSettings, RunOutcome, run_cases
from ._judging import make_judges
from ._workers import deal, forkserver, run_worker, watch_parent

__all__ = ["CASES_PER_WORKER", "CaseWorkerSpec", "cases_in_workers", "cases_on_ray", "run_case_share"]

log = structlog.get_logger(__name__)

CASES_PER_WORKER = 16  # auto: one more worker per this many cases (a case is turns x 3 calls; a worker ~2 s to start)


@dataclass(frozen=True)
class CaseWorkerSpec:
    """One worker's share of an evaluation: its cases (``jobs``) and what it needs to run them."""

    index: int
    config: dict[str, Any]
    run_id: int
    spec: BenchmarkSpec
    evaluated: BackendSettings
    evaluated_name: str
    jobs: tuple[CaseRecord, ...]
    servers: dict[str, list[str]]
    parent_pid: int | None


async def run_case_share(spec: CaseWorkerSpec) -> dict[str, int]:
    """A worker's work: run the cases of ``spec`` into ``spec.config["db"]``; returns its counts."""
    from omegaconf import OmegaConf

    from ._logging import configure_logging

    log_cfg = spec.config.get("log") or {}
    configure_logging(log_cfg.get("level", "INFO"), log_cfg.get("format", "auto"))
    structlog.contextvars.bind_contextvars(run_id=spec.run_id, worker=spec.index)
    cfg = OmegaConf.create(spec.config)
    e: EvaluationSettings = to_settings(cfg.get("evaluation"), EvaluationSettings, "evaluation")
    out = RunOutcome(evaluation_id=spec.jobs[0].evaluation_id, run_id=spec.run_id, resumed=True)
    async with Store.open(cfg.db) as store, model_pool(cfg, store, servers=spec.servers) as pool:
        user = make_roles(cfg, {"user": await pool.for_role(cfg, "user")})["user"]
        judge, _ = await make_judges(cfg, pool, e)
        model = await pool.backend(spec.evaluated, name=spec.evaluated_name)
        async with anyio.create_task_group() as tg:
            if spec.parent_pid is not None:
                tg.start_soon(watch_parent, spec.parent_pid, tg.cancel_scope)
            await run_cases(store, list(spec.jobs), user=user, judge=judge, model=model, spec=spec.spec,
                            run_id=spec.run_id, out=out)
            tg.cancel_scope.cancel()
        if store.failure is not None:  # a queued write (a call record, an event) was lost
            raise store.failure
    return {"turns_run": out.turns_run, "judge_failures": out.judge_failures}


async def _unfinished(store: Store, spec: CaseWorkerSpec) -> CaseWorkerSpec:
    """``spec`` on its cases a dead worker left: pending, or failed as they were before it began."""
    before = {r.id: r for r in spec.jobs}
    now = await store.read(lambda c: Evaluations(c).cases(spec.jobs[0].evaluation_id))
    left = tuple(r for r in now if r.id in before and (r.status == "pending" or (
        r.status == "failed" and before[r.id].status == "failed" and r.error == before[r.id].error)))
    return replace(spec, jobs=left)


def cases_in_workers(cfg: Any, store: Store, pool: ModelPool, evaluated: BackendSettings, evaluated_name: str,
                     spec: BenchmarkSpec, workers: int) -> CasesRunner:
    """The ``CasesRunner`` of ``evaluation.workers=workers`` (> 1); ``pool`` has started the servers."""
    from omegaconf import OmegaConf

    async def run(rows: list[CaseRecord], evaluation_id: int, run_id: int, out: RunOutcome) -> None:
        if not rows:
            return
        config = OmegaConf.to_container(cfg, resolve=True)
        ctx = forkserver(__name__)
        n = min(workers, len(rows))
        log.info("evaluate.workers", workers=n, cases=len(rows), evaluation_id=evaluation_id)
        async with anyio.create_task_group() as crew:
            for i, share in enumerate(deal(rows, n)):
                crew.start_soon(run_worker, ctx, CaseWorkerSpec(
                    i, config, run_id, spec, evaluated, evaluated_name, tuple(share), pool.servers, os.getpid()),
                    out, partial(_unfinished, store), run_case_share)

    return run


def cases_on_ray(cfg: Any, store: Store, evaluated: BackendSettings, evaluated_name: str, spec: BenchmarkSpec,
                 address: str | None, shards: int | None) -> CasesRunner:
    """The ``CasesRunner`` of ``evaluation.engine=ray``: each shard of cases (``shards``; None = the
    cluster's CPUs) runs as a Ray task on a shard database, merged into ``store``'s database when done."""
    from omegaconf import OmegaConf

    from ._ray import EVAL_TABLES, connect_ray, run_shards

    async def run(rows: list[CaseRecord], evaluation_id: int, run_id: int, out: RunOutcome) -> None:
        if not rows:
            return
        ray = connect_ray(address, "evaluation")
        n = min(shards or max(1, int(ray.cluster_resources().get("CPU", 1))), len(rows))
        config = OmegaConf.to_container(cfg, resolve=True)
        specs = [(CaseWorkerSpec(i, config, run_id, spec, evaluated, evaluated_name, tuple(share), {}, None),
                  [r.id for r in share]) for i, share in enumerate(deal(rows, n))]
        log.info("evaluate.ray", shards=len(specs), cases=len(rows), evaluation_id=evaluation_id)
        await run_shards(ray, Path(store.path), run_id, specs, out, run_case_share, EVAL_TABLES)

    return run
