"""The SQLite store on real files: migrations, refusing files it must not
touch, durability of ``write``, isolation of a failing op inside a batch,
flushing ``submit`` on exit, and batching under concurrency."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from aloesim.core.errors import StoreError
from aloesim.environment.store import SCHEMA_VERSION, Store, connect
from tests.support.store import fetchall, fetchone, fetchval

TABLES = {"runs", "persona_items", "personas", "trees", "nodes", "events", "llm_calls", "llm_cache",
          "evaluations", "eval_cases", "eval_turns", "checkpoints"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def event(kind: str):
    return lambda c: c.execute("INSERT INTO events (kind, payload, created_at) VALUES (?, '{}', 0)", (kind,)).lastrowid


def count_events(path: Path, kind: str | None = None) -> int:
    conn = connect(path, readonly=True)
    try:
        if kind is None:
            return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return conn.execute("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.anyio
async def test_a_new_database_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    async with Store.open(db) as store:
        names = {r[0] for r in await fetchall(store, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert await fetchval(store, "PRAGMA user_version") == SCHEMA_VERSION
        assert str(await fetchval(store, "PRAGMA journal_mode")).lower() == "wal"
    assert TABLES <= names
    async with Store.open(db) as store:  # opening again is a no-op
        assert await fetchval(store, "PRAGMA user_version") == SCHEMA_VERSION


@pytest.mark.anyio
async def test_an_empty_file_is_a_new_database(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    async with Store.open(db) as store:
        assert await fetchval(store, "PRAGMA user_version") == SCHEMA_VERSION


def test_connect_without_create_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database"):
        connect(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.anyio
async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 10)
    before = digest(db)
    with pytest.raises(StoreError) as info:
        async with Store.open(db):
            pass
    assert "is not an SQLite database" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(StoreError, match="is not an SQLite database"):
        connect(db, readonly=True)
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


@pytest.mark.anyio
async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        async with Store.open(tmp_path):
            pass


@pytest.mark.anyio
async def test_a_newer_schema_is_refused_and_the_file_is_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future_things (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = digest(db)
    with pytest.raises(StoreError) as info:
        async with Store.open(db):
            pass
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in str(info.value)
    with pytest.raises(StoreError, match="is newer"):
        connect(db, readonly=True)
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.db"]  # no -wal / -shm left behind


def test_readonly_connect_refuses_an_old_schema(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="is older"):
        connect(db, readonly=True)


_READONLY_PROBE = textwrap.dedent("""
    import sys
    import anyio
    from aloesim.core.errors import StoreError
    from aloesim.environment.store import Store

    async def main(path):
        async with Store.open(path) as store:
            await store.write(lambda c: c.execute("INSERT INTO events (kind, payload, created_at) VALUES ('x', '{}', 0)"))

    for path in sys.argv[1:]:
        try:
            anyio.run(main, path)
            print("OPENED", path)
        except StoreError as exc:
            print("STOREERROR", exc)
""")


def test_read_only_file_and_folder_are_store_errors(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    ro_file = folder / "ro-file.db"
    connect(ro_file, create=True).close()
    ro_dir = tmp_path / "ro-dir"
    ro_dir.mkdir()
    in_ro_dir = ro_dir / "inside.db"
    connect(in_ro_dir, create=True).close()
    ro_file.chmod(0o444)
    ro_dir.chmod(0o555)
    before = {p: digest(p) for p in (ro_file, in_ro_dir)}
    cmd = [sys.executable, "-c", _READONLY_PROBE, str(ro_file), str(in_ro_dir), str(ro_dir / "new.db")]
    if os.geteuid() == 0:  # root ignores permissions: drop the capabilities that let it
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    finally:
        ro_dir.chmod(0o755)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert len(lines) == 3 and all(line.startswith("STOREERROR") for line in lines), out.stdout + out.stderr
    assert "read-only" in lines[0] and "read-only" in lines[1], lines
    assert "cannot be opened or created" in lines[2], lines
    assert {p: digest(p) for p in before} == before
    assert not (ro_dir / "new.db").exists()


@pytest.mark.anyio
async def test_write_returns_after_commit(tmp_path: Path) -> None:
    db = tmp_path / "durable.db"
    async with Store.open(db) as store:
        for i in range(5):
            row_id = await store.write(event(f"e{i}"))
            other = sqlite3.connect(db)  # another connection sees it right away
            try:
                assert other.execute("SELECT kind FROM events WHERE id = ?", (row_id,)).fetchone() == (f"e{i}",)
            finally:
                other.close()


@pytest.mark.anyio
async def test_a_failing_op_does_not_spoil_its_batch(tmp_path: Path) -> None:
    db = tmp_path / "batch.db"
    outcomes: dict[str, object] = {}

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (kind, payload, created_at) VALUES ('partial', '{}', 0)")
        raise ValueError("half-way")

    async def run(name: str, fn) -> None:
        try:
            outcomes[name] = await store.write(fn)
        except Exception as exc:  # noqa: BLE001
            outcomes[name] = exc

    async with Store.open(db) as store:
        before = store.batches
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", event("a"))
            tg.start_soon(run, "boom", boom)
            tg.start_soon(run, "b", event("b"))
            tg.start_soon(run, "bad-sql", lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
            tg.start_soon(run, "c", event("c"))
        assert store.batches - before == 1  # all five shared one transaction
    assert isinstance(outcomes["boom"], ValueError)
    assert isinstance(outcomes["bad-sql"], sqlite3.OperationalError)
    assert all(isinstance(outcomes[k], int) for k in "abc")
    assert count_events(db) == 3 and count_events(db, "partial") == 0  # the failing op's own insert rolled back


@pytest.mark.anyio
async def test_submitted_ops_are_flushed_when_the_body_raises(tmp_path: Path) -> None:
    db = tmp_path / "flush.db"
    with pytest.raises(RuntimeError, match="the body failed"):
        async with Store.open(db) as store:
            for i in range(300):
                await store.submit(event("queued"))
            raise RuntimeError("the body failed")
    assert count_events(db, "queued") == 300


@pytest.mark.anyio
async def test_submitted_ops_are_flushed_when_cancelled(tmp_path: Path) -> None:
    db = tmp_path / "cancel.db"
    with anyio.move_on_after(0.5) as scope:
        async with Store.open(db) as store:
            for i in range(200):
                await store.submit(event("queued"))
            await anyio.sleep(30)
    assert scope.cancelled_caught
    assert count_events(db, "queued") == 200


@pytest.mark.anyio
async def test_submitted_ops_are_flushed_when_cancelled_at_once(tmp_path: Path) -> None:
    db = tmp_path / "cancel-now.db"
    with anyio.CancelScope() as scope:
        async with Store.open(db) as store:
            for i in range(1000):
                await store.submit(event("queued"))
            scope.cancel()  # before the writer had a chance to run
            await anyio.sleep(30)
    assert scope.cancelled_caught
    assert count_events(db, "queued") == 1000


@pytest.mark.anyio
async def test_concurrent_writes_are_batched(tmp_path: Path) -> None:
    db = tmp_path / "many.db"
    ids: list[int] = []

    async def one(i: int) -> None:
        ids.append(await store.write(event(f"w{i}")))

    async with Store.open(db) as store:
        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(one, i)
        assert store.ops == 500
        assert store.batches < store.ops // 10, (store.batches, store.ops)
    assert len(set(ids)) == 500 and count_events(db) == 500


@pytest.mark.anyio
async def test_a_submit_failure_is_not_raised_and_others_commit(tmp_path: Path) -> None:
    db = tmp_path / "submit.db"
    async with Store.open(db) as store:
        await store.submit(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
        await store.submit(event("fine"))
    assert count_events(db, "fine") == 1


@pytest.mark.anyio
async def test_reads_see_committed_writes(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "read.db") as store:
        await store.write(event("x"))
        assert await fetchval(store, "SELECT COUNT(*) FROM events WHERE kind = ?", ("x",)) == 1
        assert await fetchone(store, "SELECT * FROM events WHERE kind = ?", ("nope",)) is None
        row = (await fetchall(store, "SELECT kind FROM events"))[0]
        assert row["kind"] == "x"


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    import threading

    db = tmp_path / "race.db"
    conns: list[sqlite3.Connection] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            conns.append(connect(db, create=True))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(conns) == 6
    assert {c.execute("PRAGMA user_version").fetchone()[0] for c in conns} == {SCHEMA_VERSION}
    tables = [r[0] for r in conns[0].execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert len(tables) == len(set(tables)) and TABLES <= set(tables)
    for c in conns:
        c.close()
