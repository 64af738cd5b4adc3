"""Every core of one machine: ``generation.workers=N`` grows a run's trees in
N worker processes, each with its own event loop, on disjoint trees.

Design (chosen by measurement, docs/scaling.md): one database, written by
every worker through its own store writer (SQLite's WAL lets one writer
transaction through at a time; each worker batches its writes, so N = 2..4
writers spend little time waiting). The parent holds the run (``open_run``:
identity, lease and heartbeat cover the whole run), plans the trees, starts
the managed model servers once (``ModelPool.servers``, shared by every
worker), deals the trees out round-robin, shows one progress display (read
from the database) and sums up. A worker records its calls and nodes under
the parent's run id exactly as the single process does, so resume works as
it always has: a tree's committed nodes are kept and it grows on from them.

A worker that dies (killed, out of memory) is started again on its trees
that are not finished yet (at most ``MAX_RESTARTS`` times): nothing it
committed is grown twice. A worker that stops on an error stops the run with
that error. A worker whose parent is gone stops itself (within a second), so
a killed parent leaves no worker writing behind a run another process may
resume.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import anyio
import structlog

from ..agents import TreeRoles, make_roles, model_pool, role_backend_settings
from ..core import AloeError
from ..environment import Persona
from ..environment.store import Calls, Store, Trees
from ._generate import GenerationSettings, Progress, TreeJob, grow_trees
from ._progress import reporter

__all__ = ["MAX_RESTARTS", "TREES_PER_WORKER", "WorkerSpec", "deal", "forkserver", "grow_in_workers", "run_worker",
           "work", "worker_count"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

TREES_PER_WORKER = 64  # auto: one more worker per this many trees to grow (a worker costs ~2 s to start)
MAX_RESTARTS = 3       # times a dead worker's trees are handed to a new worker


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover -- not Linux
        return os.cpu_count() or 1


def worker_count(settings: Any, trees: int, *, one_process: bool = False, per_worker: int = TREES_PER_WORKER) -> int:
    """How many worker processes grow ``trees`` trees (or run that many cases):
    ``settings.workers`` when set, else the cores, one per ``per_worker`` items;
    never more than the items. 1 = the single-process path; ``one_process``
    (a run with ``budget.usd``: one spend counter) makes the default 1."""
    if one_process and settings.workers is None:
        return 1
    wanted = settings.workers if settings.workers is not None else min(cores(), trees // per_worker)
    return max(1, min(wanted, trees))


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    config: dict[str, Any]
    run_id: int
    roles: tuple[str, ...]
    jobs: tuple[tuple[int, Persona, int], ...]
    servers: dict[str, list[str]]
    parent_pid: int | None  # None: no parent to watch (a Ray task)


# -- the worker process ----------------------------------------------------------

def _worker_entry(spec: Any, conn: Any, target: Any = None) -> None:
    """A worker process's main: ``target(spec)`` (default ``work``: grow the trees
    of ``spec``); tell the parent ``("done", counts)`` or ``("error", aloe, message)`` over ``conn``."""
    from ..core import Interrupted, run_interruptible

    try:
        counts = run_interruptible(target or work, spec)
        conn.send(("done", counts))
    except Interrupted:  # Ctrl-C / SIGTERM: the parent stops too, and the run is resumable as is
        os._exit(130)
    except AloeError as exc:
        conn.send(("error", True, str(exc)))
    except BaseException:  # noqa: BLE001 -- a bug: its traceback goes to the parent, which raises it
        conn.send(("error", False, traceback.format_exc()))
    finally:
        conn.close()


async def work(spec: WorkerSpec) -> dict[str, int]:
    """Grow the trees of ``spec`` into ``spec.config["db"]``; returns the judge counts."""
    from omegaconf import OmegaConf

    from ._logging import configure_logging

    log_cfg = spec.config.get("log") or {}
    configure_logging(log_cfg.get("level", "INFO"), log_cfg.get("format", "auto"))
    structlog.contextvars.bind_contextvars(run_id=spec.run_id, worker=spec.index)
    cfg = OmegaConf.create(spec.config)
    settings = replace(GenerationSettings.from_config(cfg.generation), progress="off")
    jobs = [TreeJob(tree_id, persona, seed) for tree_id, persona, seed in spec.jobs]
    progress = Progress(trees_total=len(jobs))
    async with Store.open(cfg.db) as store, \
            model_pool(cfg, store, run_id=spec.run_id, servers=spec.servers) as pool:
        models = {role: await pool.for_role(cfg, role) for role in spec.roles}
        roles = TreeRoles.from_roles(make_roles(cfg, models))
        async with anyio.create_task_group() as tg:
            if spec.parent_pid is not None:
                tg.start_soon(watch_parent, spec.parent_pid, tg.cancel_scope)
            await grow_trees(store, spec.run_id, jobs, roles, settings, cfg, progress)
            tg.cancel_scope.cancel()
        if store.failure is not None:  # a queued write (a call record, an event) was lost
            raise store.failure
    return {"judge_agree": progress.judge_agree, "judge_disagree": progress.judge_disagree,
            "judge_total": progress.judge_total}


async def watch_parent(parent_pid: int, scope: anyio.CancelScope) -> None:
    """Stop the worker when the process that started it is gone (multiprocessing's
    parent sentinel: also through the forkserver, whose pipe from the parent closes)."""
    parent = multiprocessing.parent_process()
    while parent is not None and parent.is_alive():
        await anyio.sleep(0.5)
    log.warning("worker.parent_gone", parent_pid=parent_pid)
    scope.cancel()


# -- the parent ------------------------------------------------------------------

class _RecordedCalls:
    """The calls of a run as its database counts them, in the shape the progress
    display reads from a backend (``stats``; no endpoints: their limits live in the workers)."""

    endpoints: tuple[()] = ()

    def __init__(self) -> None:
        self.stats = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "retries": 0, "failures": 0}


async def _poll_progress(store: Store, run_id: int, progress: Progress, calls: _RecordedCalls,
                         since: tuple[int, int]) -> None:
    """Keep ``progress`` and ``calls`` up to date from the database (every 0.5 s)."""
    while True:
        def read(c) -> tuple[dict[str, int], int, Any]:
            return (Trees(c).status_counts([run_id])[run_id], Trees(c).node_counts(run_id).get(run_id, 0),
                    Calls(c).totals(run_id))

        by_status, nodes, totals = await store.read(read)
        progress.trees_done = by_status.get("complete", 0) - since[0]
        progress.trees_failed = by_status.get("failed", 0) - since[1]
        progress.nodes = nodes
        calls.stats.update(calls=totals.calls, prompt_tokens=totals.prompt_tokens,
                           completion_tokens=totals.completion_tokens, retries=totals.retries,
                           failures=totals.failures)
        await anyio.sleep(0.5)


def forkserver(*preload: str) -> Any:
    """The forkserver context with this module preloaded: a fresh interpreter
    (no fork of a process with threads, such as the store's writer) that
    imports aloesim once; every worker is forked from it in milliseconds
    (a spawned worker would import it again: seconds each). Started here,
    beside the parent's own start-up work. ``preload``: more modules to import there."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, *preload])
    from multiprocessing import forkserver as server

    server.ensure_running()
    return ctx


def deal(jobs: list[T], n: int) -> list[list[T]]:
    """Round-robin: every worker gets trees (or cases) from the whole of the seed's order."""
    return [jobs[i::n] for i in range(n)]


async def grow_in_workers(cfg: Any, store: Store, run_id: int, jobs: list[TreeJob], settings: GenerationSettings,
                          roles_needed: list[str], progress: Progress, workers: int) -> None:
    """Grow ``jobs`` in ``workers`` processes (see the module docstring);
    returns when every tree is complete or failed, raises the first worker's error."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    ctx = forkserver()
    started = time.monotonic()

    def counts(c) -> dict[str, int]:
        return Trees(c).status_counts([run_id])[run_id]

    before = await store.read(counts)
    # the trees of this invocation finished before it began are not its progress
    since = (before.get("complete", 0), before.get("failed", 0))
    async with model_pool(cfg, store, run_id=run_id) as pool:
        for role in roles_needed:  # managed servers start here, once, and are shared by every worker
            await pool.urls(role_backend_settings(cfg, role))
        servers = pool.servers
        calls = _RecordedCalls()
        show = reporter(settings.progress, settings.progress_interval, [calls])
        async with anyio.create_task_group() as tg:
            tg.start_soon(_poll_progress, store, run_id, progress, calls, since)
            tg.start_soon(show, progress, [])
            async with anyio.create_task_group() as crew:
                for i, share in enumerate(deal(jobs, workers)):
                    crew.start_soon(run_worker, ctx, WorkerSpec(
                        i, config, run_id, tuple(roles_needed), tuple((j.tree_id, j.persona, j.seed) for j in share),
                        servers, os.getpid()), progress, partial(_open_trees, store))
            tg.cancel_scope.cancel()
    log.info("generate.workers_done", workers=workers, wall_s=round(time.monotonic() - started, 2))


async def _open_trees(store: Store, spec: WorkerSpec) -> WorkerSpec:
    """``spec`` on its trees not finished yet (a dead worker's restart)."""
    open_ids = {t.id for t in await store.read(lambda c: Trees(c).of_run(spec.run_id, ("pending", "running")))}
    return replace(spec, jobs=tuple(j for j in spec.jobs if j[0] in open_ids))


async def run_worker(ctx: Any, spec: Any, counts: Any, unfinished: Callable[[Any], Awaitable[Any]],
                     target: Any = None) -> None:
    """Run one worker (``target(spec)`` in a process of ``ctx``; default ``work``) to its end; add the
    counts it replies to the attributes of ``counts``. When it dies, start it again on
    ``await unfinished(spec)`` (its ``jobs`` left to do; none: done)."""
    for attempt in range(MAX_RESTARTS + 1):
        if attempt:
            spec = await unfinished(spec)
            if not spec.jobs:
                return
            log.warning("worker.restarted", worker=spec.index, attempt=attempt, jobs=len(spec.jobs))
        reply = await _one_process(ctx, spec, target)
        if reply is None:
            continue  # died without a word (killed): its unfinished jobs go to a new worker
        if reply[0] == "done":
            for key, value in reply[1].items():
                setattr(counts, key, getattr(counts, key) + value)
            return
        _, aloe, message = reply
        if aloe:
            raise AloeError(f"worker {spec.index}: {message}")
        raise RuntimeError(f"worker {spec.index} failed:\n{message}")
    raise AloeError(f"worker {spec.index} died {MAX_RESTARTS + 1} times; its work is left to resume")


async def _one_process(ctx: Any, spec: Any, target: Any) -> Any:
    """Start one worker process, wait for its reply; None if it died without one.
    Cancelled, it stops the process (SIGTERM, then SIGKILL after 10 s)."""
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_worker_entry, args=(spec, send, target), name=f"aloe-worker-{spec.index}", daemon=True)
    process.start()
    send.close()
    reply: Any = None
    try:
        while reply is None:
            if receive.poll():
                try:
                    reply = receive.recv()
                except EOFError:
                    return None
            elif not process.is_alive():
                return receive.recv() if receive.poll() else None
            else:
                await anyio.sleep(0.05)
        return reply
    finally:
        with anyio.CancelScope(shield=True):
            if reply is None and process.is_alive():  # cancelled: stop it (it stops cleanly on SIGTERM)
                process.terminate()
            deadline = time.monotonic() + 10.0  # after its reply a worker exits by itself
            while process.is_alive() and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            if process.is_alive():
                process.kill()
                process.join(5)
            receive.close()
