"""Launching, probing and stopping server subprocesses, shared by the
llama.cpp and vLLM launchers.

Guarantees of ``launch_servers``:

* each server runs in its own process group (``start_new_session``), so a
  Ctrl-C in the terminal reaches only aloesim, which then stops the servers
  in order; stopping signals the whole group (vLLM spawns workers);
* on Linux each server gets ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (set by the
  tiny exec wrapper ``_guard.py``), so it dies even if aloesim is SIGKILLed.
  The kernel ties this to the *thread* that forked, so servers are spawned
  from the event-loop thread (never from a worker thread that may be
  recycled);
* output goes to a log file, whose last lines are quoted in every
  ``ServerError``; a temporary log folder (``ServerSpec.temporary_log``) is
  removed when the servers stop normally and kept when one failed
  (``_logdir``);
* stopping (on exit, error, cancellation or Ctrl-C) is shielded from
  cancellation: SIGTERM, a grace period, then SIGKILL;
* while they serve, each is watched (``ServerWatch``): a server that dies
  or hangs is restarted on its port, at most ``max_restarts`` times, and
  then named (with its log tail) to the gateway, which stops the run.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog

from aloesim.core import ServerError, lone_error

from ._logdir import finish_log_dir
from ._ports import HOST, free_ports
from ._watch import ServerWatch

__all__ = ["ManagedServer", "ServerSpec", "kill_group", "launch_servers", "log_hint", "log_tail", "probe", "respawn"]

log = structlog.get_logger(__name__)

_GUARD = Path(__file__).with_name("_guard.py")
_PORT_ATTEMPTS = 3
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: ``command(port)`` is its argv."""

    name: str  # e.g. "llama.cpp", "vllm" (for messages and logs)
    command: Callable[[int], list[str]]  # argv for a given port
    port: int  # first port to try
    port_fixed: bool  # True: the user chose it; never move to another
    log_path: Path  # stdout+stderr of the process (appended)
    env: Mapping[str, str] | None = None  # extra environment variables
    health_path: str = "/v1/models"  # answered (200) while the server lives, even while it decodes
    temporary_log: bool = False  # log_path's folder is ours: removed at exit unless a server failed


@dataclass
class ManagedServer:
    """A running server process started by ``launch_servers``."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    startup_s: float = 0.0
    argv: list[str] = field(default_factory=list)
    watch: Any = None  # its ServerWatch while launch_servers serves it (the gateway's EndpointGuard)

    @property
    def url(self) -> str:
        """OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8080/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def what(self) -> str:
        return f"{self.name} server on {HOST}:{self.port}"

    @property
    def host_port(self) -> str:
        return f"{HOST}:{self.port}"

    def check(self) -> None:
        """Raise ``ServerError`` (with the log tail) if the server is gone: its process
        exited, or, when it is watched, its watch gave up restarting it."""
        watch = self.watch
        if watch is not None and watch.failure is not None:
            raise watch.failure
        code = self.process.poll()
        if code is not None and (watch is None or watch.restarts >= watch.max_restarts):  # else: restarting
            raise ServerError(self.what, f"exited with code {code}; {log_hint(self.log_path)}")


def log_tail(path: Path, lines: int = 6, max_bytes: int = 8192) -> str:
    """The last non-empty lines of a log file joined by `` | `` (one line)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [_ANSI.sub("", ln).strip() for ln in text.splitlines()]
    return " | ".join([ln for ln in kept if ln][-lines:])


def log_hint(path: Path) -> str:
    """``log PATH: <its last lines>`` for an error message."""
    tail = log_tail(path)
    return f"log {path}" + (f": {tail}" if tail else " is empty")


def _guarded(argv: list[str]) -> list[str]:
    """``argv`` run through ``_guard.py``, which makes it die with this
    process (parent-death signal, Linux) before exec'ing it."""
    return [sys.executable, "-I", str(_GUARD), str(os.getpid()), *argv]


def _spawn(spec: ServerSpec, port: int) -> ManagedServer:
    argv = spec.command(port)
    if shutil.which(argv[0]) is None:
        raise ServerError(f"{spec.name} server", f"cannot run {argv[0]!r}: no such executable")
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(spec.env or {})}
    with open(spec.log_path, "ab") as logf:
        logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        logf.flush()
        try:
            proc = subprocess.Popen(
                _guarded(argv),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as err:
            raise ServerError(f"{spec.name} server", f"cannot run {argv[0]!r}: {err.strerror}") from None
    return ManagedServer(name=spec.name, port=port, log_path=spec.log_path, process=proc, argv=argv)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A health check never follows a redirect (a 3xx is not healthy)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def probe(url: str, timeout: float) -> bool:
    """True when ``GET url`` answers 200 (no proxy: the server is local; no redirect followed)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False


class _PortTaken(Exception):
    pass


async def _wait_ready(server: ManagedServer, timeout: float, ready_path: str) -> None:
    url = f"http://{HOST}:{server.port}{ready_path}"
    t0 = time.monotonic()
    with anyio.move_on_after(timeout):
        while True:
            code = server.process.poll()
            if code is not None:
                tail = log_tail(server.log_path, lines=20).lower()
                if "address already in use" in tail or "errno 98" in tail:
                    raise _PortTaken
                raise ServerError(
                    server.what, f"exited with code {code} before it was ready; {log_hint(server.log_path)}"
                )
            if await anyio.to_thread.run_sync(probe, url, 2.0):
                server.startup_s = time.monotonic() - t0
                return
            await anyio.sleep(0.1)
    raise ServerError(server.what, f"not ready after {timeout:g}s; {log_hint(server.log_path)}")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the pid


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    with anyio.move_on_after(timeout):
        while proc.poll() is None:
            await anyio.sleep(0.05)
    return proc.poll() is not None


async def _stop(server: ManagedServer, grace: float) -> None:
    proc = server.process
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        if not await _wait_exit(proc, grace):
            log.warning("server did not stop in time; killing", server=server.what, grace_s=grace)
            _signal_group(proc, signal.SIGKILL)
            await _wait_exit(proc, 10.0)
    # leftovers of the group (e.g. vLLM workers) go too
    _signal_group(proc, signal.SIGKILL)
    log.debug("server stopped", server=server.what, returncode=proc.returncode)


def kill_group(server: ManagedServer) -> None:
    """SIGKILL the server's whole process group (a hung server, or what is left of a dead one)."""
    _signal_group(server.process, signal.SIGKILL)


async def respawn(server: ManagedServer, spec: ServerSpec, startup_timeout: float, ready_path: str) -> None:
    """Start ``server`` again on its own port (from the event loop's thread, like the first
    start) and wait until it is ready; ``server.process`` is the new process from the start."""
    if server.process.poll() is None:
        await _wait_exit(server.process, 10.0)
    fresh = _spawn(spec, server.port)
    server.process, server.argv = fresh.process, fresh.argv
    await _wait_ready(server, startup_timeout, ready_path)


async def _start_one(
    spec: ServerSpec,
    slot: int,
    ready: list[ManagedServer | None],
    spawned: list[ManagedServer],
    startup_timeout: float,
    ready_path: str,
) -> None:
    port = spec.port
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        server = _spawn(spec, port)
        spawned.append(server)
        try:
            await _wait_ready(server, startup_timeout, ready_path)
        except _PortTaken:
            if spec.port_fixed or attempt == _PORT_ATTEMPTS:
                raise ServerError(
                    server.what, f"port is already in use; {log_hint(server.log_path)}"
                ) from None
            log.info("port taken before the server bound it; retrying", port=port)
            port = free_ports(1)[0]
            continue
        ready[slot] = server
        log.info(
            "server ready",
            server=server.what,
            pid=server.pid,
            startup_s=round(server.startup_s, 2),
            log_path=str(server.log_path),
        )
        return


@contextlib.asynccontextmanager
async def launch_servers(
    specs: Sequence[ServerSpec],
    *,
    startup_timeout: float,
    ready_path: str = "/v1/models",
    grace: float = 10.0,
    max_restarts: int = 0,
    hang_timeout: float | None = None,
) -> AsyncIterator[list[ManagedServer]]:
    """Start every server concurrently, wait until each answers
    ``GET ready_path`` with 200, yield them (in ``specs`` order), and stop them
    all on exit.  If any fails to start, the others are stopped and the first
    ``ServerError`` propagates.  While they serve, each is watched (``server.watch``):
    restarted when it dies (or answers no ``spec.health_path`` for ``hang_timeout``
    seconds; None = no hang check), at most ``max_restarts`` times."""
    ready: list[ManagedServer | None] = [None] * len(specs)
    spawned: list[ManagedServer] = []
    failed: str | None = None
    try:
        with lone_error():  # a lone failure as itself, so the user sees one ServerError
            async with anyio.create_task_group() as tg:
                for slot, spec in enumerate(specs):
                    tg.start_soon(_start_one, spec, slot, ready, spawned, startup_timeout, ready_path)
        servers = [s for s in ready if s is not None]
        with lone_error():  # the body's own error as itself (a watch never raises)
            async with anyio.create_task_group() as watches:
                for server, spec in zip(servers, specs):
                    server.watch = ServerWatch(server, spec, max_restarts=max_restarts, hang_timeout=hang_timeout,
                                               startup_timeout=startup_timeout, ready_path=ready_path,
                                               health_path=spec.health_path)
                    await watches.start(server.watch.run)
                try:
                    yield servers
                finally:
                    watches.cancel_scope.cancel()
    except ServerError as exc:
        failed = str(exc)
        raise
    finally:
        # a server that exited on its own before being stopped has failed: keep its log
        died = [s for s in spawned if s.process.poll() is not None]
        if died and failed is None:
            failed = f"{died[0].what} exited with code {died[0].process.returncode}"
            log.warning("a server exited before it was stopped; its log is kept", server=died[0].what,
                        returncode=died[0].process.returncode, log_path=str(died[0].log_path))
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for server in spawned:
                    tg.start_soon(_stop, server, grace)
            for folder in {spec.log_path.parent for spec in specs if spec.temporary_log}:
                finish_log_dir(folder, failed)
