"""``aloe serve``: run the backend's managed model server(s) on 127.0.0.1
until interrupted.

    aloe serve backend.port=8080                    # bundled SmolLM2-135M-Instruct
    aloe serve backend.port=8080 backend.servers=2  # ports 8080 and 8081
    aloe serve backend.gguf=/path/model.gguf        # any GGUF

Prints one ``serving MODEL at URL (log PATH)`` line per server, then waits. SIGINT
(Ctrl-C) or SIGTERM stops the servers and exits 0; a server that dies ends
the command with a ``ServerError`` (exit 1).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import structlog
from omegaconf import DictConfig, OmegaConf

from ...agents.servers import ManagedServer, is_managed, managed_servers
from ...core import ConfigError, lone_error

HELP = "serve the local model (llama.cpp; vLLM with backend=vllm) on 127.0.0.1 until interrupted"

log = structlog.get_logger(__name__)

_WATCH_INTERVAL_S = 1.0


def run(cfg: DictConfig) -> int:
    """Serve ``cfg.backend`` until SIGINT/SIGTERM; returns the exit code."""
    backend: Mapping[str, Any] = OmegaConf.to_container(cfg.backend, resolve=True)  # type: ignore[assignment]
    if not is_managed(backend):
        raise ConfigError(
            "backend",
            backend.get("kind"),
            "a backend aloesim runs itself: embedded, or vllm with base_url null",
        )
    return anyio.run(_serve, backend)


async def _serve(backend: Mapping[str, Any]) -> int:
    # the signal handlers are installed first, so a signal during startup
    # also stops the servers that are already up
    # (a lone failure is raised as itself: a one-line CLI error)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, lone_error():
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, signals, tg.cancel_scope)
            await _run_servers(backend)
    return 0


async def _stop_on_signal(signals: Any, scope: anyio.CancelScope) -> None:
    async for signum in signals:
        log.info("stopping servers", signal=signal.Signals(signum).name)
        print("stopping ...", file=sys.stderr, flush=True)
        scope.cancel()
        return


async def _run_servers(backend: Mapping[str, Any]) -> None:
    async with managed_servers(backend) as servers:
        model = backend.get("model") or "model"
        for server in servers:
            print(f"serving {model} at {server.url} (log {server.log_path})", flush=True)
        print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        await _watch(servers)


async def _watch(servers: list[ManagedServer]) -> None:
    """Return never; raise ``ServerError`` as soon as a server process exits."""
    while True:
        for server in servers:
            server.check()
        await anyio.sleep(_WATCH_INTERVAL_S)
