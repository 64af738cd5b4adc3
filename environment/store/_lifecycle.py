"""One run's lifecycle, for every command that records a run (generate,
personas, evaluate, train): find-or-create by identity, the lease, the end.

    async with open_run(store, "generate", config, identity) as run:
        ...                                   # grow; run.id names the run
        run.finish("complete", stats)         # or "failed"; leave it out for "complete"

* **Find or create.** With ``resume`` the newest run of the same kind and
  identity is continued (one more invocation); otherwise a new run is made.
* **Lease.** In the same ``BEGIN IMMEDIATE`` transaction the invocation
  takes the run's lease (a random holder token, pid, host, heartbeat time).
  A run whose lease is held by a live process is refused with
  ``RunBusyError`` (nothing is written), so two processes never grow the
  same run. A lease is stale, and taken over, when its holder's process is
  gone on this host (a crash, ``kill -9``) or its heartbeat is older than
  the ``stale_after`` seconds its holder declared (a holder on another host,
  or a frozen one). While
  the body runs a task beats every ``heartbeat_s``; if it finds the lease
  taken over, the body is cancelled and ``RunBusyError`` raised, and the
  run is left to its new holder.
* **One of its kind.** With ``exclusive`` (``aloe personas``: growing,
  importing and pairing all read the pools, filter against them and add to
  them) a run is also refused while *another* run of the same kind holds a
  live lease on the database, whatever its identity: two growths side by
  side would each filter against a pool without the other's new items.
* **End.** One transaction records the status (``complete`` / ``failed``
  set by the body, ``interrupted`` on cancellation or Ctrl-C, ``failed``
  with the error otherwise), the stats, the wall time and releases the lease.
  A queued write the store lost (``Store.failure``) fails the run too, even
  when the body ended well: the run is marked ``failed`` naming it, and the
  ``StoreError`` raised.

A run's wall time (``runs.wall_s``) is the sum of its invocations' wall
time; the heartbeat keeps the current one counted, so even a killed
invocation adds the time up to its last beat.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ...core import AloeError, RunBusyError, Settings, lone_error, setting
from ._runs import Lease, RunRecord, Runs
from ._store import Store, transaction

__all__ = ["ActiveRun", "LeaseSettings", "claim_run", "holder_alive", "open_run", "open_run_sync", "shown_status"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LeaseSettings(Settings):
    """The ``lease`` keys: how long this invocation's lease survives without a
    heartbeat (stored with the lease, so every other process judges it by the
    holder's own promise) and how often it beats."""

    stale_after: float = setting(60.0, help="seconds without a heartbeat before another process may take the run "
                                            "over (a holder on this host whose process is gone is taken over at "
                                            "once)", gt=0, le=7 * 86400)
    heartbeat_s: float | None = setting(None, help="seconds between heartbeats; null = a quarter of stale_after, "
                                                   "at most 5", gt=0, le=86400)

    @property
    def interval(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else max(0.05, min(5.0, self.stale_after / 4))


@dataclass
class ActiveRun:
    """The run an invocation holds; the body may set how it ended."""

    id: int
    kind: str
    resumed: bool
    holder: str
    base_wall_s: float                                     # wall time of the earlier invocations
    started: float = field(default_factory=time.monotonic)  # this invocation
    status: str = "complete"
    stats: Any = None

    def finish(self, status: str, stats: Any = None) -> None:
        self.status, self.stats = status, stats

    @property
    def invocation_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def wall_s(self) -> float:
        """The run's wall time so far (earlier invocations and this one)."""
        return round(self.base_wall_s + self.invocation_s, 3)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives name process groups, never a holder
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # exists, owned by someone else
    except OSError:
        return False
    try:  # a zombie (killed, not yet reaped) holds nothing
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def holder_alive(lease: Lease, *, now: float | None = None, host: str | None = None) -> bool:
    """Whether ``lease`` still holds its run: a heartbeat within the
    ``stale_after`` its holder declared and, on this host, a process that
    still exists."""
    now = time.time() if now is None else now
    if now - lease.heartbeat_at > lease.stale_after:
        return False
    if lease.host == (host or socket.gethostname()):
        return _pid_alive(lease.pid)
    return True


def shown_status(run: RunRecord, lease: Lease | None) -> str:
    """A run's status as the read side shows it: a run stored ``running``
    whose process is gone (killed, crashed: nobody holds its lease) was
    interrupted, and resumes like one."""
    if run.status == "running" and (lease is None or not holder_alive(lease)):
        return "interrupted"
    return run.status


def _busy(run_id: int, kind: str, lease: Lease, now: float) -> RunBusyError:
    since = time.strftime("%H:%M:%S", time.localtime(lease.acquired_at))
    return RunBusyError(
        run_id, kind, lease.pid, lease.host,
        f"is being run by another process (pid {lease.pid} on {lease.host}, since {since}, last heartbeat "
        f"{max(0.0, now - lease.heartbeat_at):.0f} s ago); wait for it to finish or stop it, then run the command "
        f"again (its lease is taken over once that process is gone or silent for {lease.stale_after:g} s)")


def claim_run(conn: sqlite3.Connection, kind: str, config: Any, identity: str, *, resume: bool, holder: str,
              settings: LeaseSettings = LeaseSettings(), exclusive: bool = False) -> ActiveRun:
    """Find (with ``resume``) or create the run and take its lease: a write
    function, run inside one transaction (the store's writer, or ``BEGIN IMMEDIATE``).
    ``exclusive``: refused while any other run of ``kind`` is held by a live process."""
    runs = Runs(conn)
    now, host, pid = time.time(), socket.gethostname(), os.getpid()
    found = runs.latest(kind, identity) if resume else None
    if exclusive:
        for other_id, current in runs.leases().items():
            other = runs.get(other_id) if holder_alive(current, now=now, host=host) else None
            if other is not None and other.kind == kind and (found is None or other_id != found.id):
                raise _busy(other_id, kind, current, now)
    if found is None:
        run_id, resumed, base = runs.create(kind, config, identity), False, 0.0
    else:
        current = runs.lease(found.id)
        if current is not None and holder_alive(current, now=now, host=host):
            raise _busy(found.id, kind, current, now)
        if current is not None:
            log.warning("run.lease_taken_over", run_id=found.id, stale_pid=current.pid, stale_host=current.host,
                        silent_s=round(now - current.heartbeat_at, 1))
        runs.reopen(found.id)
        run_id, resumed, base = found.id, True, float(found.wall_s or 0.0)
    runs.take_lease(Lease(run_id, holder, pid, host, now, now, settings.stale_after))
    return ActiveRun(run_id, kind, resumed, holder, base)


def _ending(exc: BaseException | None, run: ActiveRun, cancelled: tuple[type[BaseException], ...] = ()
            ) -> tuple[str, Any]:
    if exc is None:
        return run.status, run.stats
    if isinstance(exc, (KeyboardInterrupt, *cancelled)):
        return "interrupted", {**(run.stats if isinstance(run.stats, dict) else {}), "interrupted": True}
    return "failed", {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def _finish(conn: sqlite3.Connection, run: ActiveRun, status: str, stats: Any) -> bool:
    """Record the end and release the lease, unless another process took the run over."""
    runs = Runs(conn)
    lease = runs.lease(run.id)
    if lease is None or lease.holder != run.holder:
        return False
    runs.finish(run.id, status, stats, wall_s=run.wall_s)
    runs.release(run.id, run.holder)
    return True


def _lost(conn: sqlite3.Connection, run: ActiveRun) -> RunBusyError:
    lease = Runs(conn).lease(run.id)
    who = f"pid {lease.pid} on {lease.host}" if lease is not None else "nobody (the lease was removed)"
    return RunBusyError(run.id, run.kind, lease.pid if lease else 0, lease.host if lease else "",
                        f"was taken over by another process ({who}) while this one ran: this process stopped "
                        "(its heartbeat was late; raise lease.stale_after if the machine is that slow)")


@asynccontextmanager
async def open_run(store: Store, kind: str, config: Any, identity: str, *, resume: bool = True,
                   lease: LeaseSettings = LeaseSettings(), exclusive: bool = False) -> AsyncIterator[ActiveRun]:
    """Hold one run for the body; see the module docstring."""
    holder = secrets.token_hex(8)
    run = await store.write(lambda c: claim_run(c, kind, config, identity, resume=resume, holder=holder,
                                                settings=lease, exclusive=exclusive))
    lost: list[RunBusyError] = []

    async def heartbeat(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await anyio.sleep(lease.interval)

            def beat(c: sqlite3.Connection) -> RunBusyError | None:
                return None if Runs(c).beat(run.id, holder, run.wall_s) else _lost(c, run)

            if (err := await store.write(beat)) is not None:
                lost.append(err)
                raise err

    try:
        with lone_error():
            async with anyio.create_task_group() as tg:
                await tg.start(heartbeat)
                try:
                    yield run
                finally:
                    tg.cancel_scope.cancel()
    except BaseException as exc:
        if not lost:
            status, stats = _ending(exc, run, (anyio.get_cancelled_exc_class(),))
            await _mark(store, run, status, stats)
        raise
    else:
        if lost:  # pragma: no cover -- the heartbeat's error always ends the body
            raise lost[0]
        if (failure := store.failure) is not None:  # a queued write (a call record, an event) was lost
            await _mark(store, run, "failed", {**(run.stats if isinstance(run.stats, dict) else {}),
                                               "error": f"{type(failure).__name__}: {failure}"[:2000]})
            raise failure
        with anyio.CancelScope(shield=True):
            done = await store.write(lambda c: _finish(c, run, run.status, run.stats))
        if not done:
            raise await store.read(lambda c: _lost(c, run))


async def _mark(store: Store, run: ActiveRun, status: str, stats: Any) -> None:
    """Record how a run ended that did not end well: also after a lost queued write
    (the run must not look like it is running); a database that cannot take even this
    write (a full disk) leaves the run to be shown interrupted (its lease is gone with us)."""
    with anyio.CancelScope(shield=True):
        try:
            await store.write(lambda c: _finish(c, run, status, stats), despite_failure=True)
        except AloeError as marking:
            log.warning("run.cannot_mark", run_id=run.id, status=status, error=str(marking))


@contextmanager
def open_run_sync(db: str | Path, kind: str, config: Any, identity: str, *, resume: bool = False,
                  lease: LeaseSettings = LeaseSettings(), exclusive: bool = False) -> Iterator[ActiveRun]:
    """``open_run`` for code that is not async (training): each write in its own
    ``BEGIN IMMEDIATE`` transaction, the heartbeat on a thread of its own."""
    db, holder = Path(db), secrets.token_hex(8)
    run = transaction(db, lambda c: claim_run(c, kind, config, identity, resume=resume, holder=holder,
                                               settings=lease, exclusive=exclusive))
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease.interval):
            try:
                if not transaction(db, lambda c: Runs(c).beat(run.id, holder, run.wall_s)):
                    return  # taken over: the end below finds it and leaves the run alone
            except Exception as exc:  # noqa: BLE001 -- a missed beat is retried; the run goes on
                log.warning("run.heartbeat_failed", run_id=run.id, error=str(exc))

    beat = threading.Thread(target=heartbeat, name=f"aloe-run-{run.id}-heartbeat", daemon=True)
    beat.start()
    try:
        yield run
    except BaseException as exc:
        stop.set()
        beat.join()
        status, stats = _ending(exc, run)
        transaction(db, lambda c: _finish(c, run, status, stats))
        raise
    stop.set()
    beat.join()
    if not transaction(db, lambda c: _finish(c, run, run.status, run.stats)):
        raise transaction(db, lambda c: _lost(c, run))
