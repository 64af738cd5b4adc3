"""One process at a time grows a run (issue 12 item 3), and SIGTERM stops a
run like Ctrl-C (issue 12 item 10), with real ``aloe generate`` processes on
one SQLite file against the latency server:

* two identical commands started together: one grows the run, the other
  exits 75 with one line naming the holder and writes nothing; a command
  with another config (another run) grows beside them; every stored node
  was generated from the history its stored parents give;
* the holder killed with SIGKILL: ``aloe runs`` shows the run interrupted,
  and the next command takes the lease over and finishes the run;
* SIGTERM and SIGINT: a clean stop, one line, exit 143 / 130, the run
  marked interrupted (``aloe runs`` says so), then resumed to the end.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _common import ServerProcess, latency_server

from tests.support.reliability import (
    ALOE,
    ROOT,
    add_personas,
    aloe,
    backend_args,
    check_trees,
    env,
    kill_group,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Answers after 0.25 s: a run of 10 turns lasts several seconds."""
    with latency_server(latency=0.25, seed=5) as s:
        yield s


def generate_args(db: Path, url: str, trees: int = 3, turns: int = 10) -> list[str]:
    return ["generate", f"db={db}", f"generation.trees={trees}", f"generation.turns={turns}",
            "generation.progress=off", "log.format=json", *backend_args(url, 10)]


def popen(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as err:
        return subprocess.Popen([*ALOE, *args], env=env(), cwd=ROOT, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=err, text=True)


def finished(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def nodes(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def check_histories(db: Path) -> int:
    """Every node was generated from the history its stored ancestors give:
    each recorded call of the rejected responder for (tree, turn, branch) was
    sent exactly the stored conversation up to that node, and there is one
    such call per node (nobody grew a node twice). Returns the nodes checked."""
    stored = {(t, b): (m, p, r) for t, b, m, p, r in
              query(db, "SELECT tree_id, branch, user_message, preferred, rejected FROM nodes")}
    calls: dict[tuple[int, str], list[list[dict]]] = {}
    for tree, branch, request in query(db, "SELECT tree_id, branch, request FROM llm_calls"
                                           " WHERE role = 'rejected' AND error IS NULL"):
        calls.setdefault((tree, branch), []).append(json.loads(request)["messages"])
    for (tree, branch), (message, _, rejected) in stored.items():
        history = []
        for i in range(len(branch)):
            m, p, r = stored[(tree, branch[:i])]
            history += [{"role": "user", "content": m}, {"role": "assistant", "content": p if branch[i] == "p" else r}]
        sent = calls.get((tree, branch), [])
        assert len(sent) == 1, (tree, branch, len(sent))
        assert sent[0][:-1] == history and message in sent[0][-1]["content"], (tree, branch)
    return len(stored)


def runs_json(db: Path) -> list[dict]:
    done = aloe("runs", f"db={db}", "format=json")
    assert done.code == 0, done.err
    return json.loads(done.out)


def test_two_processes_on_one_run_one_grows_the_other_is_refused(tmp_path: Path, slow_server: ServerProcess) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 6)
    url = slow_server.base_url
    same = [popen(generate_args(db, url), tmp_path / f"same{i}.log") for i in range(2)]
    other = popen(generate_args(db, url, trees=2, turns=4), tmp_path / "other.log")
    results = [finished(p) for p in same]
    other_code, other_out = finished(other)

    codes = sorted(code for code, _ in results)
    assert codes == [0, 75], [(p.returncode, (tmp_path / f"same{i}.log").read_text()[-2000:])
                              for i, p in enumerate(same)]
    loser = next(i for i, (code, _) in enumerate(results) if code == 75)
    winner = 1 - loser
    summary = json.loads(results[winner][1].strip().splitlines()[-1])
    assert summary["trees_complete"] == 3 and summary["resumed"] is False
    other_summary = json.loads(other_out.strip().splitlines()[-1])
    assert other_code == 0 and other_summary["trees_complete"] == 2
    # the two configs start together: either may create its run first, so the shared run's id is 1 or 2
    assert {summary["run_id"], other_summary["run_id"]} == {1, 2}
    err = (tmp_path / f"same{loser}.log").read_text()
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"aloe generate: run {summary['run_id']} (generate) is being run by another process "
                           f"(pid {same[winner].pid} on ")
    assert "wait for it to finish" in line and "Traceback" not in err and results[loser][1] == ""

    # the refused process wrote nothing: each run had one invocation, no run was made for it
    assert query(db, "SELECT id, invocations, status FROM runs ORDER BY id") == [(1, 1, "complete"),
                                                                                 (2, 1, "complete")]
    assert query(db, "SELECT COUNT(*) FROM run_leases") == [(0,)]
    check_trees(db)
    assert check_histories(db) == 3 * 10 + 2 * 4
    out = tmp_path / "export"
    done = aloe("export", f"db={db}", f"export.dir={out}")
    assert done.code == 0, done.err
    assert (out / "dpo.jsonl").read_text().count("\n") == 3 * 10 + 2 * 4


def test_a_killed_holder_is_taken_over(tmp_path: Path, slow_server: ServerProcess) -> None:
    db = tmp_path / "k.db"
    add_personas(db, 4)
    args = [*generate_args(db, slow_server.base_url), "lease.stale_after=4"]  # a heartbeat every second
    first = popen(args, tmp_path / "first.log")

    def beaten() -> bool:
        return nodes(db) >= 3 and query(db, "SELECT wall_s FROM runs")[0][0] > 0

    try:
        wait_for(lambda: beaten() or first.poll() is not None, 120, "three nodes and a heartbeat")
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        kill_group(first)  # SIGKILL: no cleanup, the lease stays behind
    finally:
        kill_group(first)
    assert query(db, "SELECT run_id, pid FROM run_leases") == [(1, first.pid)]
    (listed,) = runs_json(db)
    assert listed["status"] == "interrupted" and listed["wall_s"] > 0  # its process is gone; its time is kept

    second = popen(args, tmp_path / "second.log")
    code, out = finished(second)
    err = (tmp_path / "second.log").read_text()
    assert code == 0, err[-3000:]
    assert "run.lease_taken_over" in err and str(first.pid) in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["resumed"] is True and summary["trees_complete"] == 3
    assert query(db, "SELECT invocations, status FROM runs") == [(2, "complete")]
    assert query(db, "SELECT COUNT(*) FROM run_leases") == [(0,)]
    check_trees(db, trees=3, turns=10)
    assert check_histories(db) == 30


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_cleanly_and_the_run_resumes(tmp_path: Path, slow_server: ServerProcess,
                                                             sig: int, code: int) -> None:
    db = tmp_path / "s.db"
    add_personas(db, 4)
    args = generate_args(db, slow_server.base_url)
    began = time.monotonic()
    proc = popen(args, tmp_path / "stopped.log")
    try:
        wait_for(lambda: nodes(db) >= 3 or proc.poll() is not None, 120, "three committed nodes")
        assert proc.poll() is None, (tmp_path / "stopped.log").read_text()[-2000:]
        os.kill(proc.pid, sig)
        returncode, out = finished(proc, timeout=60)
    finally:
        kill_group(proc)
    lifetimes = [time.monotonic() - began]
    err = (tmp_path / "stopped.log").read_text()
    name = signal.Signals(sig).name
    assert returncode == code, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"aloe generate: interrupted ({name}); what was committed is kept: "
                                            "run the same command again to continue")
    assert "Traceback" not in err and out == ""
    assert query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert query(db, "SELECT COUNT(*) FROM run_leases") == [(0,)]
    check_trees(db)
    kept = nodes(db)
    done = aloe("runs", f"db={db}")
    assert done.code == 0 and done.out.splitlines()[1].split()[2] == "interrupted", done.out

    began = time.monotonic()
    again = popen(args, tmp_path / "again.log")
    returncode, out = finished(again)
    lifetimes.append(time.monotonic() - began)
    assert returncode == 0, (tmp_path / "again.log").read_text()[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["resumed"] is True and summary["trees_complete"] == 3 and summary["nodes"] == 30
    check_trees(db, trees=3, turns=10)
    assert check_histories(db) == 30 and kept >= 3
    ((invocations, wall, span),) = query(db, "SELECT invocations, wall_s, finished_at - started_at FROM runs")
    assert invocations == 2 and summary["wall_s"] == pytest.approx(wall, abs=0.5)
    # the two invocations' time: within the two processes' lifetimes, never the gap between them (which
    # holds at least the second process's start-up), unlike first start to last end
    assert 0 < wall <= sum(lifetimes) and wall < span - 1


HOLD_PERSONAS = """
import sys
from aloesim.environment.store import open_run_sync
with open_run_sync(sys.argv[1], "personas", {}, "a growth", exclusive=True):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_one_persona_pool_change_at_a_time(tmp_path: Path) -> None:
    """Persona pools are filtered against what they hold: while another process holds
    a persona run on the database (here a growth), ``aloe personas`` with any other
    config is refused with one line (exit 75) and adds nothing; once it ends, the
    same command imports."""
    db = tmp_path / "p.db"
    add_personas(db, 2)
    good = tmp_path / "profiles.jsonl"
    good.write_text("".join(json.dumps(f"A lighthouse keeper number {i} who collects {i} old maps.") + "\n"
                            for i in range(3)))
    pools = "SELECT COUNT(*) FROM persona_items"
    before = query(db, pools)
    holder = subprocess.Popen([ALOE[0], "-c", HOLD_PERSONAS, str(db)], env=env(), cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = aloe("personas", f"db={db}", f"import.profiles={good}", "personas.threshold=1.0", "log.level=ERROR")
        lines = [line for line in done.err.splitlines() if line.strip()]
        assert done.code == 75 and len(lines) == 1 and "Traceback" not in done.err, done.err[-2000:]
        assert "(personas) is being run by another process" in lines[0] and f"pid {holder.pid} on " in lines[0]
        assert query(db, pools) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    done = aloe("personas", f"db={db}", f"import.profiles={good}", "personas.threshold=1.0")
    assert done.code == 0, done.err[-2000:]
    assert query(db, pools)[0][0] == before[0][0] + 3
