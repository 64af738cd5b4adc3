"""``generation.workers=N``: N worker processes grow one run's trees into one database.

Fast: how many workers a run gets, and that the count is not part of a run's
identity. Integration (the CLI as a subprocess, against the latency server's
deterministic replies): two workers, one of them SIGKILLed mid-run and
replaced, give exactly the trees of one process (nothing grown twice); a SIGKILLed parent
takes its workers with it and the run resumes to the same trees; with the
embedded model, the workers share the parent's one llama.cpp server.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _common import latency_server  # benchmarks/ (pyproject's pytest pythonpath)
from test_generate import add_personas  # sibling test module
from test_generate_integration import (  # sibling test module
    KEY_VAR,
    check_integrity,
    marked,
    run_to_end,
    start,
    tree_content,
    wait_gone,
)

from aloesim.orchestration._config import compose_config
from aloesim.orchestration._generate import GenerationSettings
from aloesim.orchestration._runs import identity, plain_config
from aloesim.orchestration._workers import TREES_PER_WORKER, worker_count

TREES, TURNS = 8, 6


# -- fast --------------------------------------------------------------------

def test_worker_count_auto_follows_cores_and_trees_explicit_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aloesim.orchestration._workers.cores", lambda: 2)
    auto = GenerationSettings()
    assert worker_count(auto, 10) == 1  # a small run stays one process (a worker costs seconds to start)
    assert worker_count(auto, TREES_PER_WORKER * 2) == 2
    assert worker_count(auto, 100_000) == 2  # never more than the cores
    assert worker_count(GenerationSettings(workers=4), 3) == 3  # never more than the trees
    assert worker_count(GenerationSettings(workers=4), 1000) == 4
    assert worker_count(GenerationSettings(workers=1), 1000) == 1
    assert worker_count(auto, 0) == 1


def test_workers_do_not_change_a_runs_identity() -> None:
    """Re-running with another worker count resumes the same run."""
    one = plain_config(compose_config("generate", ["generation.workers=1"]))
    four = plain_config(compose_config("generate", ["generation.workers=4"]))
    other = plain_config(compose_config("generate", ["generation.turns=3"]))
    assert identity(one) == identity(four) != identity(other)


# -- against the latency server ----------------------------------------------

@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    """0.2 s per reply: a run of TREES x TURNS grows for about TURNS x 3 x 0.2 s."""
    with latency_server(latency=0.2, seed=5) as server:
        yield server.base_url


def args_for(db: Path, url: str, workers: int) -> list[str]:
    return [f"db={db}", f"generation.trees={TREES}", f"generation.turns={TURNS}", f"generation.workers={workers}",
            "generation.progress=log", "generation.progress_interval=1", "backend=openai", f"backend.base_url={url}",
            f"backend.api_key_env={KEY_VAR}", "backend.dialect=openai", "backend.timeout=30", "log.format=json"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory, slow_url: str) -> dict:
    """The trees of the same run grown by one process: what every test compares with."""
    tmp = tmp_path_factory.mktemp("one")
    db = tmp / "one.db"
    add_personas(db, TREES)
    run_to_end(args_for(db, slow_url, 1), uuid.uuid4().hex, tmp / "one.log", timeout=120)
    check_integrity(db, turns=TURNS, trees=TREES)
    return tree_content(db)


def nodes_in(db: Path) -> int:
    try:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def workers_of(marker: str) -> list[int]:
    """The worker processes of the aloe process marked ``marker``: forked by its forkserver."""
    servers = {pid for pid, cmd in marked(marker) if "multiprocessing.forkserver" in cmd}

    def parent(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return -1

    return [pid for pid in servers if parent(pid) in servers]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.integration
def test_a_killed_worker_is_replaced_and_nothing_is_grown_twice(tmp_path: Path, slow_url: str,
                                                                one_process: dict) -> None:
    """Two workers; one SIGKILLed mid-run: the trees are exactly those of one process."""
    db, log, marker = tmp_path / "killed.db", tmp_path / "killed.log", uuid.uuid4().hex
    add_personas(db, TREES)
    proc = start(args_for(db, slow_url, 2), marker, log)
    try:
        wait_for(lambda: len(workers_of(marker)) == 2 and nodes_in(db) >= 2, 60, "two workers growing")
        os.kill(workers_of(marker)[0], signal.SIGKILL)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f'"workers": 2, "trees": {TREES}, "event": "generate.workers"' in text
    assert '"event": "worker.restarted"' in text
    assert '"event": "generate.progress"' in text  # one display, the parent's
    check_integrity(db, turns=TURNS, trees=TREES)
    assert tree_content(db) == one_process


@pytest.mark.integration
def test_a_killed_parent_takes_its_workers_and_the_run_resumes(tmp_path: Path, slow_url: str,
                                                               one_process: dict) -> None:
    db, log, marker = tmp_path / "parent.db", tmp_path / "parent.log", uuid.uuid4().hex
    add_personas(db, TREES)
    args = args_for(db, slow_url, 2)
    proc = start(args, marker, log)
    try:
        wait_for(lambda: len(workers_of(marker)) == 2 and nodes_in(db) >= 2, 60, "two workers growing")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone, not its process group
        proc.wait()
    assert wait_gone(marker, timeout=10) == []  # its workers noticed and stopped
    grown = nodes_in(db)
    check_integrity(db)
    stats = run_to_end(args, marker, log, timeout=120)
    assert stats["resumed"] is True and stats["trees_complete"] == TREES
    assert grown < TREES * TURNS
    check_integrity(db, turns=TURNS, trees=TREES)
    assert tree_content(db) == one_process


@pytest.mark.integration
@pytest.mark.slow
def test_embedded_workers_share_the_parents_one_server(tmp_path: Path) -> None:
    """The real model: two workers, one llama.cpp server (started by the parent)."""
    db, log, marker = tmp_path / "real.db", tmp_path / "real.log", uuid.uuid4().hex
    args = [f"db={db}", "generation.trees=2", "generation.turns=1", "generation.workers=2", "backend.servers=1",
            "log.format=json",
            "agents.user.max_tokens=24", "agents.preferred.max_tokens=24", "agents.rejected.max_tokens=24",
            "agents.inducer.max_tokens=48"]
    proc = start(args, marker, log)
    servers, workers = 0, 0
    try:
        while proc.poll() is None:
            seen = marked(marker)
            servers = max(servers, sum("llama_cpp.server" in cmd for _, cmd in seen))
            workers = max(workers, len(workers_of(marker)))
            time.sleep(0.2)
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert (servers, workers) == (1, 2)
    check_integrity(db, turns=1, trees=2)
    assert wait_gone(marker) == []


# -- engine=ray, on a local Ray ------------------------------------------------

@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One local Ray (2 CPUs) for the session; its workers see the test's key variable."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault(KEY_VAR, "not-a-real-key")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.integration
def test_ray_shards_merge_into_exactly_the_trees_of_one_process(tmp_path: Path, slow_url: str, one_process: dict,
                                                                local_ray: None) -> None:
    import anyio

    from aloesim.orchestration.commands.generate import generate

    db = tmp_path / "ray.db"
    add_personas(db, TREES)
    cfg = compose_config("generate", [*args_for(db, slow_url, 2), "generation.engine=ray",
                                      "generation.progress=off"])
    stats = anyio.run(generate, cfg)
    assert (stats["trees_complete"], stats["nodes"], stats["llm_calls"]) == (TREES, TREES * TURNS, TREES * TURNS * 4)
    check_integrity(db, turns=TURNS, trees=TREES)
    assert tree_content(db) == one_process
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # the shards' run is the parent's
    assert conn.execute("SELECT COUNT(DISTINCT run_id) FROM llm_calls").fetchone()[0] == 1


@pytest.mark.integration
def test_ray_retries_a_killed_shard_and_merges_it_once(tmp_path: Path, slow_url: str, one_process: dict,
                                                       local_ray: None) -> None:
    """A Ray worker SIGKILLed while it grows a shard: Ray runs the shard again from
    its clean shard database; the merged result is still exactly one process's."""
    import threading

    import anyio

    from aloesim.orchestration.commands.generate import generate

    db = tmp_path / "ray_killed.db"
    add_personas(db, TREES)
    cfg = compose_config("generate", [*args_for(db, slow_url, 2), "generation.engine=ray",
                                      "generation.progress=off"])
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(stats=anyio.run(generate, cfg)))
    thread.start()

    def shard_tasks() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and b"ray::_grow_shard" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    wait_for(lambda: bool(shard_tasks()) or not thread.is_alive(), 60, "a shard task")
    time.sleep(1.0)  # well into the shard's growing (3.6 s at 0.2 s per reply)
    os.kill(shard_tasks()[0], signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive()
    stats = out["stats"]
    assert (stats["trees_complete"], stats["nodes"]) == (TREES, TREES * TURNS)
    check_integrity(db, turns=TURNS, trees=TREES)
    assert tree_content(db) == one_process
    conn = sqlite3.connect(db)
    # the killed attempt's calls were never merged: exactly one call per role and node
    assert conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0] == TREES * TURNS * 4


def test_a_ray_address_where_nothing_answers_is_one_line_before_anything_is_written(tmp_path: Path,
                                                                                   slow_url: str) -> None:
    """ray.init would wait minutes on it (and print Ray's own retry lines): the address is
    checked first, like a model server that is down."""
    import socket

    from tests.support.reliability import aloe

    with socket.socket() as s:  # a port of 127.0.0.1 nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "never.db"
    for address, says in ((f"127.0.0.1:{port}", "nothing answers there"), ("ray://nowhere", "host:port")):
        started = time.monotonic()
        done = aloe("generate", *args_for(db, slow_url, 2), "generation.engine=ray",
                    f"generation.ray_address={address}", **{KEY_VAR: "sk-test-not-a-real-key"})
        lines = [line for line in done.err.splitlines() if line.strip()]
        assert done.code == 2 and len(lines) == 1 and "Traceback" not in done.err, done.err[-2000:]
        assert lines[0].startswith(f"aloe generate: config error: generation.ray_address='{address}'"), lines[0]
        assert says in lines[0] and time.monotonic() - started < 60
        assert not db.exists()


def test_the_ray_address_check_names_the_commands_key() -> None:
    from aloesim.core.errors import ConfigError
    from aloesim.orchestration._ray import check_ray_address

    check_ray_address(None, "evaluation")
    check_ray_address("auto", "evaluation")  # Ray's own: the cluster this machine joined
    for bad in ("nowhere", "ray://:80", "host:0", "host:http"):
        with pytest.raises(ConfigError, match=r"^config error: evaluation.ray_address=.*host:port"):
            check_ray_address(bad, "evaluation")
