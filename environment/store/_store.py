"""The SQLite store: one writer task that batches, readers beside it.

Writes are plain functions of a ``sqlite3.Connection``. They queue on a
bounded stream; the writer task takes as many as are waiting (up to
``batch_max``), runs them in one ``BEGIN IMMEDIATE`` transaction on a worker
thread, each inside its own savepoint so one bad write cannot spoil the
others, commits, and then wakes the writers. ``await store.write(fn)``
returns only after the commit: that is the durability point the tree
environment relies on (a node is committed before its successor is asked
for). ``await store.submit(fn)`` only waits for queue space; use it for
records nobody waits on (LLM call logs, bus events). Both are flushed before
``Store.open`` exits, even on error or cancellation.

Reads run on their own read-only connection, owned by a thread of its own:
``await store.read(fn)`` calls ``fn(conn)`` there (WAL lets reads run beside
the writer). Both paths take plain functions of a ``sqlite3.Connection``, so
the repositories (``Runs``, ``Personas``, ``Trees``, ``Calls``,
``Evaluations``) serve the async commands and the sync tools alike.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ...core import StoreError, lone_error
from ._schema import MIGRATIONS, SCHEMA_VERSION

T = TypeVar("T")

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_file(path: Path) -> None:
    if path.exists():
        if path.is_dir():
            raise StoreError(str(path), "is a directory, not a database file")
        with path.open("rb") as fh:
            head = fh.read(16)
        if head and head != _SQLITE_MAGIC:
            raise StoreError(str(path), "is not an SQLite database")


def _configure(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(str(path), f"cannot switch to WAL journal (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            str(path),
            f"schema version {version} is newer than this aloesim understands ({SCHEMA_VERSION}); upgrade aloesim",
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # re-read inside the lock: another process may have migrated meanwhile
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for v in range(version, SCHEMA_VERSION):
            for stmt in _split_sql(MIGRATIONS[v]):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {v + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _probe_writable(conn: sqlite3.Connection) -> None:
    """Fail now, not at the first write, when the file cannot be written
    (SQLite opens a read-only file without complaint)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        conn.execute("ROLLBACK")


def _split_sql(script: str) -> list[str]:
    out, buf = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out


def _as_store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    msg = str(exc)
    if "not a database" in msg:
        return StoreError(str(path), "is not an SQLite database")
    if "readonly" in msg or "read-only" in msg:
        return StoreError(str(path), "is read-only")
    if "disk is full" in msg or "disk I/O" in msg:
        return StoreError(str(path), "disk is full or failing")
    if "unable to open" in msg:
        return StoreError(str(path), "cannot be opened or created (check the folder exists and is writable)")
    return StoreError(str(path), msg)


def connect(path: str | Path, *, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open the database synchronously (for tools that are not async: export,
    show, tests). Migrates it unless ``readonly``. Raises StoreError with a
    one-line reason when the file cannot be used."""
    path = Path(path)
    _check_file(path)
    if not path.exists() and not create:
        raise StoreError(str(path), "no such database (run a command that creates it first, or check db=)")
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _as_store_error(path, exc) from None
    try:
        # refuse a newer schema BEFORE anything writes (switching to WAL rewrites the header)
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                str(path),
                f"schema version {version} is newer than this aloesim understands ({SCHEMA_VERSION}); upgrade aloesim",
            )
        if readonly and version < SCHEMA_VERSION:
            raise StoreError(str(path), f"schema version {version} is older; open it once read-write to migrate")
        _configure(conn, path, readonly=readonly)
        if not readonly:
            _migrate(conn, path)
            _probe_writable(conn)
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise _as_store_error(path, exc) from None
    except BaseException:
        conn.close()
        raise


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """Open an existing database for reading only (export, show, runs); one of
    an older schema version is migrated first, as every command does."""
    try:
        return connect(path, readonly=True)
    except StoreError as exc:
        if "is older" not in exc.reason:
            raise
    connect(path).close()  # migrate once
    return connect(path, readonly=True)


def transaction(path: str | Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on a connection of
    its own (for code that is not async: training, the sync run lifecycle)."""
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        conn.close()


@dataclass
class _Op(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    wait: bool
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class Store:
    """An open aloesim database. Build it with ``async with Store.open(path)``."""

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: _ReadThread, batch_max: int, queue: int) -> None:
        self.path = path
        self._writer_conn = writer
        self._reader = reader
        self._batch_max = batch_max
        self._send, self._receive = anyio.create_memory_object_stream[_Op](queue)
        self._thread = anyio.CapacityLimiter(1)
        self._drained = anyio.Event()  # set when the writer has committed everything and stopped
        self.batches = 0
        self.ops = 0

    # -- lifecycle -------------------------------------------------------
    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: str | Path, *, create: bool = True, batch_max: int = 512, queue: int = 4096
    ) -> AsyncIterator[Store]:
        path = Path(path)
        writer = await anyio.to_thread.run_sync(lambda: connect(path, create=create))
        try:
            reader = _ReadThread(await anyio.to_thread.run_sync(_read_connection, path))
        except sqlite3.Error as exc:
            writer.close()
            raise _as_store_error(path, exc) from None
        store = cls(path, writer, reader, batch_max, queue)
        try:
            with lone_error():  # a lone failure of the body is raised as itself
                async with anyio.create_task_group() as tg:
                    await tg.start(store._write_loop)
                    try:
                        yield store
                    finally:
                        # flush everything queued, even on error or cancellation: wait for the
                        # writer to drain before the task group gets to cancel it
                        with anyio.CancelScope(shield=True):
                            await store._send.aclose()
                            await store._drained.wait()
        finally:
            reader.close()
            writer.close()

    async def _write_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            # shielded: the writer stops only when the sending side is closed and the
            # queue is drained (``open`` always closes it), never half-way by cancellation
            with anyio.CancelScope(shield=True):
                await self._drain()
        finally:
            self._drained.set()

    async def _drain(self) -> None:
        async with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except anyio.EndOfStream:
                    return
                batch = [first]
                while len(batch) < self._batch_max:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await anyio.to_thread.run_sync(self._commit, batch, limiter=self._thread)
                self.batches += 1
                self.ops += len(batch)
                for op in batch:
                    op.done.set()

    def _commit(self, batch: list[_Op]) -> None:
        conn = self._writer_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.fn(conn)
                except Exception as exc:  # noqa: BLE001 -- isolate: one bad op must not spoil the batch
                    conn.execute("ROLLBACK TO op")
                    op.error = exc
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = _as_store_error(self.path, exc)
            for op in batch:
                op.error = err

    # -- writing ---------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return its result once committed."""
        op: _Op[T] = _Op(fn, wait=True)
        await self._send.send(op)
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def submit(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue ``fn`` for the next batch without waiting for the commit.
        A failure is not reported to the caller; use for logs and events."""
        await self._send.send(_Op(fn, wait=False))

    # -- reading ---------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the read connection (its own thread, one read at a
        time); it sees what is committed, never the writer's open batch."""
        return await self._reader.run(fn)


class _ReadThread:
    """A thread that owns the read connection and runs read functions in
    arrival order, handing each result back to the event loop (what
    aiosqlite does for its connection; a queue served by one thread costs a
    third of a ``to_thread`` call per read when many tasks read at once).
    A cancelled caller's read still runs; its result is dropped."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._jobs: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop,
                                            asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="aloe-store-reader", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                fn, loop, future = job
                try:
                    result, error = fn(self._conn), None
                except BaseException as exc:  # noqa: BLE001 -- handed to the caller
                    result, error = None, exc
                loop.call_soon_threadsafe(_settle, future, result, error)
        finally:
            self._conn.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return await future

    def close(self) -> None:
        """Serve what is queued, close the connection, stop."""
        self._jobs.put(None)
        self._thread.join()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _read_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA query_only = ON")  # the writer task is the only one that writes
        return conn
    except BaseException:
        conn.close()
        raise


def now() -> float:
    return time.time()
