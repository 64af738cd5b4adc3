"""One run's lifecycle on real SQLite files: find-or-create by identity, the
lease (refused while held, taken over when its holder is gone or silent,
given up at the end), the heartbeat, how a run ends (complete, failed,
interrupted) and its wall time summed over invocations. The same with real
processes is in tests/reliability/test_leases.py."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from aloesim.core.errors import RunBusyError, StoreError
from aloesim.environment.store import (
    Lease,
    LeaseSettings,
    RunRecord,
    Runs,
    Store,
    connect,
    holder_alive,
    open_run,
    open_run_sync,
    shown_status,
    transaction,
)

pytestmark = pytest.mark.anyio

FAST = LeaseSettings(stale_after=5.0, heartbeat_s=0.05)


def run_row(db: Path, run_id: int = 1) -> RunRecord:
    conn = connect(db)
    try:
        record = Runs(conn).get(run_id)
        assert record is not None
        return record
    finally:
        conn.close()


def lease_row(db: Path, run_id: int = 1) -> Lease | None:
    conn = connect(db)
    try:
        return Runs(conn).lease(run_id)
    finally:
        conn.close()


def put_lease(db: Path, **fields) -> None:
    """Write a lease as another process would have left it."""
    now = time.time()
    lease = Lease(**{"run_id": 1, "holder": "someone-else", "pid": os.getpid(), "host": socket.gethostname(),
                     "acquired_at": now, "heartbeat_at": now, "stale_after": 60.0, **fields})
    transaction(db, lambda c: Runs(c).take_lease(lease))


def gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


async def test_a_run_is_created_held_and_finished(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store, open_run(store, "generate", {"a": 1}, "ident", lease=FAST) as run:
        assert (run.id, run.resumed) == (1, False)
        held = lease_row(db)
        assert held is not None and held.holder == run.holder and held.pid == os.getpid()
        assert run_row(db).status == "running"
        await anyio.sleep(0.2)
        run.finish("failed", {"trees": 3})
    r = run_row(db)
    assert (r.status, r.stats, r.config, r.invocations) == ("failed", {"trees": 3}, {"a": 1}, 1)
    assert 0.2 <= r.wall_s < 5 and r.finished_at is not None
    assert lease_row(db) is None  # given up at the end


async def test_resuming_adds_an_invocation_and_its_wall_time(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store:
        for _ in range(2):
            async with open_run(store, "generate", {}, "ident", lease=FAST) as run:
                await anyio.sleep(0.15)
        assert run.resumed and run.id == 1
        async with open_run(store, "generate", {}, "other", lease=FAST) as other:
            assert other.id == 2 and not other.resumed
        async with open_run(store, "generate", {}, "ident", resume=False, lease=FAST) as fresh:
            assert fresh.id == 3 and not fresh.resumed
    r = run_row(db)
    assert (r.status, r.invocations) == ("complete", 2)
    assert 0.3 <= r.wall_s < 5  # the sum of both invocations, not first start to last end


async def test_a_held_run_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store, open_run(store, "evaluate", {}, "ident", lease=FAST) as run:
        before = run_row(db)
        with pytest.raises(RunBusyError) as info:
            async with open_run(store, "evaluate", {}, "ident", lease=FAST):
                raise AssertionError("never entered")
        assert run_row(db) == before and lease_row(db).holder == run.holder
        # a different run (another identity) is held beside it
        async with open_run(store, "evaluate", {}, "another", lease=FAST) as second:
            assert second.id == 2
    err = info.value
    assert (err.run_id, err.kind, err.pid, err.exit_code) == (1, "evaluate", os.getpid(), 75)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in str(err) and "\n" not in str(err)
    assert "wait for it to finish" in str(err)


@pytest.mark.parametrize("left", [
    {"host": "elsewhere", "heartbeat_at": time.time() - 120},  # silent past its stale_after
    {"pid": "gone"},                                           # its process is gone on this host
    {"pid": 0},                                                # no process at all
])
async def test_a_stale_lease_is_taken_over(tmp_path: Path, left: dict) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store, open_run(store, "generate", {}, "ident", lease=FAST):
        pass
    if left.get("pid") == "gone":
        left = {"pid": gone_pid()}
    put_lease(db, **left)
    with capture_logs() as logs:
        async with Store.open(db) as store, open_run(store, "generate", {}, "ident", lease=FAST) as run:
            assert run.resumed and lease_row(db).holder == run.holder
    assert any(e["event"] == "run.lease_taken_over" for e in logs)
    assert lease_row(db) is None and run_row(db).status == "complete"


async def test_a_live_lease_on_another_host_is_respected(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store, open_run(store, "generate", {}, "ident", lease=FAST):
        pass
    put_lease(db, host="elsewhere", pid=999999)  # a pid that means nothing here: only the heartbeat counts
    async with Store.open(db) as store:
        with pytest.raises(RunBusyError, match="pid 999999 on elsewhere"):
            async with open_run(store, "generate", {}, "ident", lease=FAST):
                pass


async def test_an_exclusive_run_is_refused_beside_any_live_run_of_its_kind(tmp_path: Path) -> None:
    """``exclusive`` (persona pools): one run of the kind at a time on the database,
    whatever the identity; other kinds go on beside it; a dead holder does not block."""
    db = tmp_path / "r.db"
    async with Store.open(db) as store, open_run(store, "personas", {}, "grow", resume=False, lease=FAST,
                                                 exclusive=True) as held:
        with pytest.raises(RunBusyError) as info:
            async with open_run(store, "personas", {}, "import", resume=False, lease=FAST, exclusive=True):
                raise AssertionError("never entered")
        assert info.value.run_id == held.id and f"pid {os.getpid()}" in str(info.value)
        async with open_run(store, "generate", {}, "g", lease=FAST, exclusive=True) as other_kind:
            assert other_kind.id != held.id
        # without exclusive, another identity of the kind is its own run, as before
        async with open_run(store, "personas", {}, "plain", resume=False, lease=FAST):
            pass
    assert [r.kind for r in (run_row(db, i) for i in (1, 2, 3))] == ["personas", "generate", "personas"]
    put_lease(db, run_id=1, pid=gone_pid())  # the growth's process died holding it
    async with Store.open(db) as store, open_run(store, "personas", {}, "pair", resume=False, lease=FAST,
                                                 exclusive=True) as after:
        assert after.id == 4


async def test_the_heartbeat_keeps_the_lease_and_the_wall_time_fresh(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store, open_run(store, "generate", {}, "ident", lease=FAST):
        first = lease_row(db).heartbeat_at
        await anyio.sleep(0.4)
        assert lease_row(db).heartbeat_at > first
        assert run_row(db).wall_s >= 0.2  # a kill now would keep this much


async def test_a_lease_taken_over_stops_the_body_and_leaves_the_run_to_its_new_holder(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    reached = []
    async with Store.open(db) as store:
        with pytest.raises(RunBusyError, match="taken over by another process") as info:
            async with open_run(store, "generate", {}, "ident", lease=FAST):
                put_lease(db, holder="the-new-holder", pid=4242, host="elsewhere")
                await anyio.sleep(5)
                reached.append(True)
    assert not reached and "pid 4242 on elsewhere" in str(info.value)
    assert run_row(db).status == "running" and lease_row(db).holder == "the-new-holder"


async def test_how_a_run_ends(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with Store.open(db) as store:
        with anyio.CancelScope() as scope:
            async with open_run(store, "generate", {}, "a", lease=FAST):
                scope.cancel()
                await anyio.sleep(1)
        with pytest.raises(ValueError):
            async with open_run(store, "generate", {}, "b", lease=FAST):
                raise ValueError("boom")
        async with open_run(store, "generate", {}, "c", lease=FAST) as run:
            run.finish("complete", {"n": 1})
    interrupted, failed, complete = (run_row(db, i) for i in (1, 2, 3))
    assert (interrupted.status, interrupted.stats) == ("interrupted", {"interrupted": True})
    assert (failed.status, failed.stats) == ("failed", {"error": "ValueError: boom"})
    assert (complete.status, complete.stats) == ("complete", {"n": 1})
    assert lease_row(db, 1) is None and lease_row(db, 2) is None and lease_row(db, 3) is None


async def test_a_queued_write_lost_fails_the_run_even_when_the_body_ends_well(tmp_path: Path) -> None:
    """A submitted write that fails (here: onto a table that does not exist) is not
    swallowed: the body that went on to finish 'complete' still ends with the run
    marked failed naming what was lost, its lease given up, and the StoreError raised."""
    db = tmp_path / "r.db"
    with pytest.raises(StoreError, match=r"a queued write failed \(a test row\)") as info:
        async with Store.open(db) as store, open_run(store, "generate", {}, "a", lease=FAST) as run:
            await store.submit(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"), what="a test row")
            with anyio.fail_after(5):
                while store.failure is None:
                    await anyio.sleep(0.01)
            run.finish("complete", {"n": 1})
    r = run_row(db)
    assert r.status == "failed" and r.stats["n"] == 1
    assert r.stats["error"] == f"StoreError: {info.value}"
    assert lease_row(db) is None

def test_the_sync_lifecycle(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    connect(db, create=True).close()
    with open_run_sync(db, "train", {"x": 1}, "t", lease=FAST) as run:
        assert lease_row(db).holder == run.holder
        first = lease_row(db).heartbeat_at
        time.sleep(0.3)
        assert lease_row(db).heartbeat_at > first  # the heartbeat thread
        run.finish("complete", {"loss": 0.5})
    with pytest.raises(KeyboardInterrupt), open_run_sync(db, "train", {}, "t", lease=FAST):
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError), open_run_sync(db, "train", {}, "t", lease=FAST):
        raise RuntimeError("out of memory")
    runs = [run_row(db, i) for i in (1, 2, 3)]
    assert [r.status for r in runs] == ["complete", "interrupted", "failed"]
    assert runs[0].stats == {"loss": 0.5} and runs[0].wall_s >= 0.3
    assert runs[2].stats == {"error": "RuntimeError: out of memory"}
    assert all(lease_row(db, i) is None for i in (1, 2, 3))


def test_liveness_and_the_shown_status() -> None:
    now, host = time.time(), socket.gethostname()
    mine = Lease(1, "h", os.getpid(), host, now, now, 60.0)
    assert holder_alive(mine, now=now)
    assert not holder_alive(mine, now=now + 61)                         # silent too long
    assert not holder_alive(Lease(1, "h", gone_pid(), host, now, now, 60.0), now=now)  # process gone
    assert holder_alive(Lease(1, "h", 1, "elsewhere", now, now, 60.0), now=now + 59)  # another host: heartbeat only
    run = RunRecord(1, "generate", {}, "x", "running", now, None, None, 0.0, 1)
    assert shown_status(run, mine) == "running"
    assert shown_status(run, None) == "interrupted"            # nobody holds it: its process is gone
    assert shown_status(run, Lease(1, "h", 1, "elsewhere", now - 100, now - 100, 60.0)) == "interrupted"
    done = RunRecord(1, "generate", {}, "x", "complete", now, now, None, 1.0, 1)
    assert shown_status(done, None) == "complete"
