"""``evaluation.workers=N``: an evaluation's cases run in N worker processes into one database.

Against the loopback latency server (replies a hash of the request: the same
conversation gets the same replies in any process): two workers store
exactly the conversations, scores and report numbers of one process. The
choices that keep one process are one-line config errors.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
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


def test_a_budget_with_workers_is_one_config_error(tmp_path, files, server) -> None:  # noqa: F811
    cfg = compose_config("evaluate", args(tmp_path, files, server, "evaluation.workers=2", "budget.usd=1"))
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
