"""Starting the servers a ``backend`` config section asks for."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aloesim.core.errors import ConfigError

from ._embedded import check_timeout, embedded_specs
from ._process import ManagedServer, launch_servers
from ._vllm import vllm_specs

__all__ = ["is_managed", "managed_servers"]

_KINDS = ("embedded", "vllm", "openai")


def is_managed(backend: Mapping[str, Any]) -> bool:
    """True when aloesim must start the backend's servers itself: always for
    ``embedded``, for ``vllm`` when ``base_url`` is null."""
    kind = backend.get("kind")
    if kind not in _KINDS:
        raise ConfigError("backend.kind", kind, " | ".join(_KINDS))
    return kind == "embedded" or (kind == "vllm" and not backend.get("base_url"))


@contextlib.asynccontextmanager
async def managed_servers(backend: Mapping[str, Any]) -> AsyncIterator[list[ManagedServer]]:
    """Start the servers of a ``backend`` config section (``conf/backend/*.yaml``)
    and yield them (``server.url`` is each base URL; ``server.watch`` restarts a
    server that dies or hangs, ``max_restarts`` times, ``hang_timeout``); yields
    ``[]`` for a backend aloesim does not manage (openai, vllm with
    ``base_url``).  All validation happens before any process starts."""
    if not is_managed(backend):
        yield []
        return
    get = backend.get
    if get("kind") == "embedded":
        timeout = check_timeout(get("startup_timeout", 120))
        specs = embedded_specs(
            get("gguf"),
            get("servers", 1),
            get("port"),
            get("n_ctx", 4096),
            get("n_threads"),
            n_batch=get("n_batch", 128),
            prompt_cache_mb=get("prompt_cache_mb", 256),
            model_alias=get("model"),
            log_dir=get("log_dir"),
            logits_all=bool(get("logits_all", False)),
        )
        grace = 10.0
    else:
        timeout = check_timeout(get("startup_timeout", 600))
        extra = get("args") or []
        specs = vllm_specs(
            get("model"),
            get("servers", 1),
            get("port"),
            tensor_parallel_size=get("tensor_parallel_size", 1),
            gpu_memory_utilization=get("gpu_memory_utilization", 0.9),
            max_model_len=get("max_model_len"),
            max_num_seqs=get("max_num_seqs"),
            dtype=get("dtype", "auto"),
            seed=get("seed"),
            extra_args=[str(a) for a in extra],
            log_dir=get("log_dir"),
        )
        grace = 30.0
    restarts = get("max_restarts", 2)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise ConfigError("backend.max_restarts", restarts, "an integer >= 0")
    hang = get("hang_timeout", 60)
    if hang is not None and (isinstance(hang, bool) or not isinstance(hang, (int, float)) or hang <= 0):
        raise ConfigError("backend.hang_timeout", hang, "null (no hang check) or a number of seconds > 0")
    async with launch_servers(specs, startup_timeout=timeout, grace=grace, max_restarts=restarts,
                              hang_timeout=hang) as servers:
        yield servers
