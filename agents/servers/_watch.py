"""Watching a managed server while it serves: the guard the gateway consults.

``ServerWatch.run`` (started by ``launch_servers`` for every server) notices
that the server died (its process exited) or hung (no health check answered
for ``hang_timeout`` seconds: it is then killed), logs it with the tail of
its log, and starts it again on the same port, at most ``max_restarts``
times. After that (or when a restart fails) the watch holds a
``ServerError`` naming the server, the cause and the log tail.

The gateway sees it as an ``EndpointGuard``: ``await usable()`` returns at
once while the server is up, waits while it restarts, and raises the
``ServerError`` once it is gone for good (the run then stops cleanly);
``trouble()`` (a call could not connect or timed out) makes the watch look
now instead of at its next tick.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio.abc import TaskStatus

from aloesim.core import ServerError

if TYPE_CHECKING:
    from ._process import ManagedServer, ServerSpec

__all__ = ["ServerWatch"]

log = structlog.get_logger(__name__)

_TICK = 0.5  # seconds between looks at the process


class ServerWatch:
    """The watch over one managed server (see the module docstring)."""

    def __init__(self, server: ManagedServer, spec: ServerSpec, *, max_restarts: int, hang_timeout: float | None,
                 startup_timeout: float, ready_path: str, health_path: str) -> None:
        self.server, self.spec = server, spec
        self.max_restarts, self.hang_timeout = max_restarts, hang_timeout
        self.startup_timeout, self.ready_path, self.health_path = startup_timeout, ready_path, health_path
        self.restarts = 0
        self.failure: ServerError | None = None
        self._up = anyio.Event()
        self._up.set()
        self._poke = anyio.Event()  # set by trouble(): look now
        self._looked = anyio.Event()  # set once the watch has looked after the current poke

    # -- the gateway's side (EndpointGuard) ---------------------------------
    async def usable(self) -> None:
        if self._poke.is_set():  # a call just failed to connect: let the watch look first
            with anyio.move_on_after(_TICK * 4 + 6):
                await self._looked.wait()
        if self.failure is None and not self._up.is_set():
            await self._up.wait()  # bounded: a restart ends in startup_timeout, one way or the other
        if self.failure is not None:
            raise self.failure

    def trouble(self) -> None:
        self._poke.set()

    # -- the watch ----------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled or the server is gone for good; never raises."""
        from ._process import log_tail, probe

        task_status.started()
        last_ok = time.monotonic()
        next_probe = last_ok
        while self.failure is None:
            with anyio.move_on_after(_TICK):
                await self._poke.wait()
            looked = self._looked
            poked, self._poke, self._looked = self._poke.is_set(), anyio.Event(), anyio.Event()
            code = self.server.process.poll()
            cause = None
            if code is not None:
                cause = f"exited with code {code}"
            elif self.hang_timeout is not None and (poked or time.monotonic() >= next_probe):
                now = time.monotonic()
                next_probe = now + min(5.0, self.hang_timeout / 4)
                url = f"http://{self.server.host_port}{self.health_path}"
                if await anyio.to_thread.run_sync(probe, url, min(5.0, self.hang_timeout / 2)):
                    last_ok = time.monotonic()
                elif now - last_ok >= self.hang_timeout:
                    cause = f"answered no health check for {now - last_ok:.0f}s (hung; killed)"
            if cause is None:
                looked.set()
                continue
            self._up = anyio.Event()  # callers wait from now on (until restarted or gone)
            looked.set()
            tail = log_tail(self.server.log_path)
            log.warning("server.down", server=self.server.what, cause=cause, restarts=self.restarts,
                        max_restarts=self.max_restarts, log_tail=tail)
            await self._restart(cause)
            last_ok = next_probe = time.monotonic()

    async def _restart(self, cause: str) -> None:
        from ._process import kill_group, log_hint, respawn

        up = self._up
        try:
            kill_group(self.server)  # a hung one, or what is left of a dead one's group
            if self.restarts >= self.max_restarts:
                done = "not restarted" if not self.max_restarts else f"restarted {self.restarts} time(s) already"
                self.failure = ServerError(self.server.what, f"{cause}; {done} (backend.max_restarts="
                                                             f"{self.max_restarts}); {log_hint(self.server.log_path)}")
                return
            self.restarts += 1
            log.info("server.restarting", server=self.server.what, restart=self.restarts)
            await respawn(self.server, self.spec, self.startup_timeout, self.ready_path)
            log.info("server.restarted", server=self.server.what, restart=self.restarts, pid=self.server.pid)
        except ServerError as exc:  # the restart itself failed
            self.failure = ServerError(self.server.what, f"{cause}; the restart failed: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 -- the watch never raises: the gateway gets the error
            self.failure = ServerError(self.server.what, f"{cause}; the restart failed: {type(exc).__name__}: {exc}")
        finally:
            if self.failure is not None:
                log.warning("server.gone", server=self.server.what, error=self.failure.reason)
            up.set()
