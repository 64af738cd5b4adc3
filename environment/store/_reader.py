"""The store's read side: one read-only connection owned by a thread of its
own, serving read functions in arrival order (``Store.read``)."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ReadThread", "read_connection"]

T = TypeVar("T")


class ReadThread:
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


def read_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA query_only = ON")  # the writer task is the only one that writes
        return conn
    except BaseException:
        conn.close()
        raise
