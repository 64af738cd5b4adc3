"""Raw SQL reads on an open ``Store`` for tests (the package reads only
through the typed repositories; tests may look at tables directly)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from aloesim.environment.store import Store


async def fetchall(store: Store, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return await store.read(lambda c: c.execute(sql, params).fetchall())


async def fetchone(store: Store, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
    return await store.read(lambda c: c.execute(sql, params).fetchone())


async def fetchval(store: Store, sql: str, params: Sequence[Any] = ()) -> Any:
    row = await fetchone(store, sql, params)
    return None if row is None else row[0]
