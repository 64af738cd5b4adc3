"""Runs: each invocation is recorded with its resolved config; a run's
identity is a hash of the config keys that decide its output, so running
the same command again resumes it (``environment.store.open_run`` holds it)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..core import to_settings
from ..environment.store import LeaseSettings, Runs, Store, claim_run

# Keys that do not change what a run produces (where it is stored, how it reports, how fast it goes).
VOLATILE = {
    "db", "log", "resume", "retry_failed", "cache", "lease",
    "generation.progress", "generation.progress_interval", "generation.max_trees_in_flight", "generation.workers",
    "generation.engine", "generation.ray_address",
    "generation.estimate", "dry_run", "budget", "pricing",
}
VOLATILE_SUFFIXES = (".concurrency", ".timeout", ".max_retries", ".retry_budget", ".rpm", ".tpm",
                     ".startup_timeout", ".port", ".servers", ".parallel", ".n_threads", ".base_urls",
                     ".backoff_base", ".backoff_max", ".max_restarts", ".hang_timeout")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of a config as dotted keys, as a run's identity hashes them
    (kept as is: a change would change every stored run's identity). Showing
    how configs differ is the read side's (``inspection.show.config_diff``)."""
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


def lease_settings(cfg: DictConfig) -> LeaseSettings:
    """The checked ``lease`` keys of a command's config (defaults when it has none)."""
    return to_settings(cfg.get("lease") or {}, LeaseSettings, "lease")


async def find_or_create_run(store: Store, kind: str, cfg: DictConfig, *, resume: bool = True) -> tuple[int, bool]:
    """The run ``open_run`` would hold, found or created the same way, but
    not held (for tests and tools that drive ``grow_trees`` themselves).
    Returns (run_id, resumed)."""
    config = plain_config(cfg)

    def find_or_create(c) -> tuple[int, bool]:
        run = claim_run(c, kind, config, identity(config), resume=resume, holder="find_or_create_run")
        Runs(c).release(run.id, run.holder)
        return run.id, run.resumed

    return await store.write(find_or_create)

