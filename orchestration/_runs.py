"""Runs: each invocation is recorded with its resolved config; a run's
identity is a hash of the config keys that decide its output, so running
the same command again resumes it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..environment.store import Store, create_run

# Keys that do not change what a run produces (where it is stored, how it reports, how fast it goes).
VOLATILE = {
    "db", "log", "resume", "retry_failed", "cache",
    "generation.progress", "generation.progress_interval", "generation.max_trees_in_flight",
}
VOLATILE_SUFFIXES = (".concurrency", ".timeout", ".max_retries", ".retry_budget", ".rpm", ".tpm",
                     ".startup_timeout", ".port", ".servers", ".parallel", ".n_threads", ".base_urls",
                     ".max_restarts", ".hang_timeout")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def identity(config: dict[str, Any]) -> str:
    flat = {k: v for k, v in flatten(config).items()
            if k not in VOLATILE and not k.startswith(tuple(v + "." for v in VOLATILE))
            and not k.endswith(VOLATILE_SUFFIXES)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


async def find_or_create_run(store: Store, kind: str, cfg: DictConfig, *, resume: bool = True) -> tuple[int, bool]:
    """The unfinished (or finished) run with the same identity, or a new one.
    Returns (run_id, resumed)."""
    config = plain_config(cfg)
    ident = identity(config)
    if resume:
        row = await store.fetchone(
            "SELECT id FROM runs WHERE kind = ? AND config_hash = ? ORDER BY id DESC LIMIT 1", (kind, ident))
        if row is not None:
            run_id = row[0]
            await store.write(lambda c: c.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", (run_id,)))
            return run_id, True
    run_id = await store.write(lambda c: create_run(c, kind, config, ident))
    return run_id, False


def config_differences(configs: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per run, the flattened keys whose values are not the same in every run."""
    flats = {rid: flatten(c) for rid, c in configs.items()}
    keys = set().union(*[f.keys() for f in flats.values()]) if flats else set()
    varying = {k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats.values()}) > 1}
    return {rid: {k: f.get(k) for k in sorted(varying)} for rid, f in flats.items()}
