"""``evaluation.workers=N`` and ``evaluation.engine=ray``: an evaluation's cases run in N worker
processes (or Ray tasks on shard databases) into one database.

Against the loopback latency server (replies a hash of the request: the same
conversation gets the same replies in any process): two workers store
exactly the conversations, scores, calls and report numbers of one process
(fast); integration: a SIGKILLed worker is replaced and no turn is stored
twice; two Ray shards on a local Ray merge into the evaluation of one
process. The choices that keep one process are one-line config errors.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from latency_server import ServerConfig, serve_in_thread
from test_evaluate_cost import PRICE, args, files, server  # noqa: F401 -- sibling test module and its fixtures

from aloesim.core.errors import ConfigError
from aloesim.evaluation import EvaluationSettings
from aloesim.orchestration._config import compose_config
from aloesim.orchestration._eval_workers import CASES_PER_WORKER
from aloesim.orchestration._workers import worker_count
from aloesim.orchestration.commands import evaluate


def _stored(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT c.case_index, c.status, t.turn, t.user_message, t.reply, t.score, t.judge_error"
            " FROM eval_turns t JOIN eval_cases c ON c.id = t.case_id ORDER BY c.case_index, t.turn").fetchall()


def _calls(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT role, COUNT(*) FROM llm_calls GROUP BY role").fetchall())


def test_two_workers_store_the_conversations_and_report_of_one_process(tmp_path, files, server, capsys) -> None:  # noqa: F811
    summaries, stored, calls = [], [], []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        cfg = compose_config("evaluate", args(out, files, server, f"evaluation.workers={workers}"))
        assert evaluate.run(cfg) == 0
        printed = capsys.readouterr()
        summaries.append(json.loads(printed.out.strip().splitlines()[-1]))
        assert ("evaluate.workers" in printed.out + printed.err) == (workers == 2)  # two processes ran the cases
        stored.append(_stored(out / "e.db"))
        calls.append(_calls(out / "e.db"))
    one, two = summaries
    assert len(stored[0]) == 6 * 3 and all(row[1] == "complete" for row in stored[0])
    assert stored[1] == stored[0]  # every turn once, the same messages, replies and scores
    assert calls[1] == calls[0] and calls[0]["evaluated"] == 18  # nothing called twice
    for key in ("status", "cases", "turns", "summary", "al", "judge_failures", "failed_cases", "judge_reliable"):
        assert two[key] == one[key], key


def test_worker_count_of_an_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aloesim.orchestration._workers.cores", lambda: 2)
    auto = EvaluationSettings()
    assert worker_count(auto, 10, per_worker=CASES_PER_WORKER) == 1  # a small benchmark stays one process
    assert worker_count(auto, 100, per_worker=CASES_PER_WORKER) == 2
    assert worker_count(EvaluationSettings(workers=4), 3, per_worker=CASES_PER_WORKER) == 3
    assert worker_count(auto, 100, one_process=True, per_worker=CASES_PER_WORKER) == 1


@pytest.mark.parametrize("more", [["evaluation.workers=2"], ["evaluation.engine=ray"]])
def test_a_budget_with_workers_is_one_config_error(tmp_path, files, server, more) -> None:  # noqa: F811
    cfg = compose_config("evaluate", args(tmp_path, files, server, *more, "budget.usd=1"))
    with pytest.raises(ConfigError, match="budget.usd"):
        evaluate.run(cfg)
    assert not (tmp_path / "e.db").exists()  # nothing written


@pytest.fixture(scope="module")
def ray_here() -> Iterator[None]:
    """A local Ray (2 CPUs), or the one this session already started (test_workers' ``local_ray``)."""
    ray = pytest.importorskip("ray")
    ours = not ray.is_initialized()
    if ours:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        if ours:
            ray.shutdown()


@pytest.mark.integration
def test_ray_shards_of_cases_merge_into_the_evaluation_of_one_process(tmp_path, files, server, capsys,  # noqa: F811
                                                                      ray_here) -> None:
    results = []
    for name, more in (("one", ["evaluation.workers=1"]), ("ray", ["evaluation.engine=ray", "evaluation.workers=2"])):
        out = tmp_path / name
        out.mkdir()
        assert evaluate.run(compose_config("evaluate", args(out, files, server, *more))) == 0
        printed = capsys.readouterr()
        assert ("evaluate.ray" in printed.out + printed.err) == (name == "ray")
        results.append((json.loads(printed.out.strip().splitlines()[-1]), _stored(out / "e.db"),
                        _calls(out / "e.db")))
    (one, stored1, calls1), (two, stored2, calls2) = results
    assert len(stored1) == 18 and stored2 == stored1 and calls2 == calls1  # every turn once, nothing called twice
    for key in ("status", "cases", "turns", "summary", "al", "judge_failures", "failed_cases"):
        assert two[key] == one[key], key
    with sqlite3.connect(tmp_path / "ray" / "e.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # the shards' run is the parent's
        assert conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 1


def _forked_workers() -> list[int]:
    """This process's worker processes: the children of its multiprocessing forkserver."""
    def children(pid: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    servers = [c for c in children(os.getpid()) if b"forkserver" in cmdline(c)]
    return [w for s in servers for w in children(s)]


@pytest.mark.integration
def test_a_killed_worker_is_replaced_and_no_turn_is_run_twice(tmp_path, files, server, capsys) -> None:  # noqa: F811
    ref = tmp_path / "one"
    ref.mkdir()
    assert evaluate.run(compose_config("evaluate", args(ref, files, server, "evaluation.workers=1"))) == 0
    capsys.readouterr()
    out = tmp_path / "killed"
    out.mkdir()
    killed: list[int] = []

    def kill_one_worker() -> None:  # once turns are stored, SIGKILL one of the two workers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            workers = _forked_workers()
            if len(workers) == 2 and (out / "e.db").exists() and _turns(out / "e.db") >= 1:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.05)

    with serve_in_thread(ServerConfig(latency=0.3, seed=4)) as slow:
        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        try:
            assert evaluate.run(compose_config("evaluate", args(out, files, slow, "evaluation.workers=2"))) == 0
        finally:
            killer.join()
    printed = capsys.readouterr()
    assert killed and "worker.restarted" in printed.out + printed.err
    assert _stored(out / "e.db") == _stored(ref / "e.db")  # every turn once, as one process stores them


def _turns(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM eval_turns").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.integration
@pytest.mark.slow  # SmolLM2 calls take seconds each on a loaded 2-core machine
def test_two_workers_evaluate_with_the_real_embedded_model(tmp_path, files, embedded_url, capsys) -> None:  # noqa: F811
    """SmolLM2 (llama.cpp) as user, judge and evaluated model, two cases in two workers: every case's
    turns stored once under the parent's one run, the report written."""
    p, q = files
    common = [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}", f"benchmark.personalities={q}",
              f"evaluation.out_dir={tmp_path / 'out'}", f"+backend.base_url={embedded_url}", "benchmark.cases=2",
              "benchmark.turns=2", "agents.user.max_tokens=24", "model.max_tokens=16", "agents.judge.max_tokens=12",
              "evaluation.judge_check.pairs=2", "evaluation.bootstrap=100", "evaluation.workers=2"]
    code = evaluate.run(compose_config("evaluate", common))
    assert code in (0, 3)  # 3: a case the tiny model could not finish
    printed = capsys.readouterr()
    assert "evaluate.workers" in printed.out + printed.err
    summary = json.loads(printed.out.strip().splitlines()[-1])
    assert summary["cases"] == 2 and Path(summary["report"]["json"]).is_file()
    rows = _stored(tmp_path / "e.db")
    assert len(rows) == len({(r[0], r[2]) for r in rows}) and len({r[0] for r in rows}) <= 2  # every turn once
    if code == 0:
        assert len(rows) == 2 * 2 and summary["failed_cases"] == 0
    with sqlite3.connect(tmp_path / "e.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(DISTINCT run_id) FROM llm_calls").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE role = 'evaluated'").fetchone()[0] >= 2


def test_an_hf_checkpoint_with_workers_is_one_config_error(tmp_path, files, server) -> None:  # noqa: F811
    pytest.importorskip("transformers")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    more = [a for a in args(tmp_path, files, server) if not a.startswith("model")]
    cfg = compose_config("evaluate", [*more, "model=hf", f"model.path={ckpt}", "evaluation.workers=2"])
    with pytest.raises(ConfigError, match="evaluation.workers"):
        evaluate.run(cfg)
    assert not (tmp_path / "e.db").exists()
