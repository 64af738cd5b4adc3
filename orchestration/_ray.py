"""Beyond one machine: ``generation.engine=ray`` grows a run's trees as Ray
tasks across a cluster (``generation.ray_address``; null = a local Ray).

The parent holds the run in its database (``open_run``: identity, lease,
heartbeat) and plans the trees as always. Each shard of trees (round-robin,
``generation.workers`` shards; null = the cluster's CPUs) is cut into a
shard database (the run row, its personas, its trees and their committed
nodes, with the parent's ids), shipped to a Ray task as bytes (no shared
file system needed), grown there by the same worker code as
``generation.workers`` and shipped back; the existing merge
(``merge_databases``: the run, personas and trees match by natural key)
adds its nodes, calls and events to the parent's database, one transaction
per shard.

A task whose worker process dies is retried by Ray (``MAX_RESTARTS``) from
the shard database it was given, so a retry starts clean and only a
finished shard is merged: never a tree twice. A killed parent merges
nothing more; running it again resumes the trees still open. Managed
servers (embedded, vLLM) start inside each task on its own node; for a
cluster, point ``backend`` at served endpoints instead.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import anyio
import structlog

from ..core.errors import AloeError, ConfigError
from ..environment.store import (
    EVAL_TABLES,
    TREE_TABLES,
    Store,
    database_bytes,
    merge_databases,
    shard_database,
)
from ._generate import GenerationSettings, Progress, TreeJob
from ._workers import MAX_RESTARTS, WorkerSpec, deal, work

__all__ = ["EVAL_TABLES", "check_ray_address", "grow_on_ray", "run_shards", "shard_database"]

log = structlog.get_logger(__name__)


def check_ray_address(address: str | None, group: str = "generation", *, timeout: float = 5.0) -> None:
    """A cluster address that is malformed or where nothing answers is one line
    (``ConfigError``) before the database is opened: ``ray.init`` itself would wait
    minutes for it, blocking the run's heartbeat. ``None`` and ``auto`` are Ray's own
    (a local Ray; the cluster this machine joined)."""
    if address is None or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{group}.ray_address", address, "host:port, ray://host:port, auto, or null (a local Ray)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        why = "no answer within 5 s" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ConfigError(f"{group}.ray_address", address,
                          f"the address of a running Ray cluster (nothing answers there: {why})") from None


def connect_ray(address: str | None, group: str = "generation") -> Any:
    """The ``ray`` module, connected to ``address`` (a local Ray when None); ``group``: the config group
    named in errors."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{group}.engine", "ray", "local, or install Ray first: pip install 'aloesim[ray]'") \
            from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise ConfigError(f"{group}.ray_address", address, f"the address of a running Ray cluster ({exc})") \
                from None
    return ray


def _grow_shard(spec: Any, shard: bytes, target: Any = None) -> tuple[dict[str, int], bytes]:
    """The Ray task: grow the shard (``target(spec)``; default ``work``) in a database of its own;
    return the counts and that database."""
    from dataclasses import replace

    from ..core import run_interruptible

    with tempfile.TemporaryDirectory(prefix="aloe-shard-") as tmp:
        db = Path(tmp) / "shard.db"
        db.write_bytes(shard)
        spec = replace(spec, config={**spec.config, "db": str(db)})
        counts = run_interruptible(target or work, spec)
        return counts, database_bytes(db)


async def grow_on_ray(cfg: Any, store: Store, run_id: int, jobs: list[TreeJob], settings: GenerationSettings,
                      roles_needed: list[str], progress: Progress) -> None:
    """Grow ``jobs`` as Ray tasks and merge each finished shard into ``store``'s database."""
    from omegaconf import OmegaConf

    # in the loop's (main) thread: Ray sets its signal handlers there; a local Ray's
    # few seconds of start-up are well within the run lease's stale_after
    ray = connect_ray(settings.ray_address)
    shards = settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    config = OmegaConf.to_container(cfg, resolve=True)
    specs = [(WorkerSpec(i, config, run_id, tuple(roles_needed), tuple((j.tree_id, j.persona, j.seed) for j in share),
                         {}, None), [j.tree_id for j in share])
             for i, share in enumerate(deal(jobs, min(shards, len(jobs))))]
    log.info("generate.ray", shards=len(specs), trees=len(jobs))
    await run_shards(ray, Path(store.path), run_id, specs, progress)


async def run_shards(ray: Any, db: Path, run_id: int, specs: list[tuple[Any, list[int]]], counts: Any,
                     target: Any = None, tables: tuple = TREE_TABLES) -> None:
    """Run each ``(spec, ids)`` as a Ray task (``target(spec)``, default ``work``) on a shard database of
    ``ids`` (``tables``) and merge each finished shard into ``db``; the counts each replies are added to
    the attributes of ``counts``."""
    task = ray.remote(max_retries=MAX_RESTARTS, num_cpus=1)(_grow_shard)
    with tempfile.TemporaryDirectory(prefix="aloe-ray-") as tmp:
        refs = {}
        for spec, ids in specs:
            i = spec.index
            data = await anyio.to_thread.run_sync(shard_database, db, run_id, ids, Path(tmp) / f"out-{i}.db", tables)
            refs[task.remote(spec, data, target)] = i
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=0)
                if not done:
                    await anyio.sleep(0.2)
                    continue
                i = refs.pop(done[0])
                try:
                    replied, data = await anyio.to_thread.run_sync(ray.get, done[0])
                except ray.exceptions.RayError as exc:  # the task failed for good (retries spent, or an error)
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, AloeError):
                        raise AloeError(f"shard {i}: {cause}") from None
                    raise
                back = Path(tmp) / f"back-{i}.db"
                back.write_bytes(data)
                await anyio.to_thread.run_sync(merge_databases, db, [back])
                for key, value in replied.items():
                    setattr(counts, key, getattr(counts, key) + value)
                log.info("ray.shard_merged", shard=i, left=len(refs))
        finally:
            for ref in refs:  # stopped or failed: the shards still growing are dropped, not merged
                ray.cancel(ref, force=True)
