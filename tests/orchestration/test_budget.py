"""``budget.usd`` (issue 16.2): a run stops cleanly when its spend reaches the
limit (no new call starts, the calls in flight finish and are recorded, the run
is marked interrupted, one line on stderr, exit code 4) and resumes with a
higher limit to the same result, never growing a tree or a node twice. Against
the loopback OpenAI-compatible server (benchmarks/latency_server.py) serving
a model priced by an override."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from latency_server import ServerConfig, serve_in_thread
from test_estimate import _personas  # sibling test module

from aloesim.core.errors import BudgetReached, ConfigError
from aloesim.orchestration._config import compose_config
from aloesim.orchestration.cli import main
from aloesim.orchestration.commands import generate

PRICE = "pricing.models=[{model: house-model-7b, input: 100.0, output: 400.0}]"  # dear: a few calls cost cents


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(ServerConfig(latency=0.02, seed=5)) as root:
        yield root


def args(db: Path, root: str, *extra: str) -> list[str]:
    return [f"db={db}", "generation.trees=4", "generation.turns=3", "generation.progress=off", "backend=openai",
            f"backend.base_url={root}/v1", "backend.api_key_env=null", "backend.dialect=openai",
            "backend.model=house-model-7b", "backend.concurrency=4", PRICE, *extra]


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def recorded_after_crossing(db: Path, limit: float) -> int:
    """How many calls were recorded after the one that took the run's spend to ``limit``."""
    costs = [c or 0.0 for (c,) in _rows(db, "SELECT cost_usd FROM llm_calls ORDER BY id")]
    total = 0.0
    for i, cost in enumerate(costs):
        total += cost
        if total >= limit:
            return len(costs) - i - 1
    raise AssertionError(f"the spend {total} never reached {limit}")


def test_the_budget_stops_the_run_cleanly_and_a_higher_one_finishes_it(tmp_path: Path, server: str, capsys) -> None:
    ref = tmp_path / "ref.db"
    _personas(ref, 4)
    assert generate.run(compose_config("generate", args(ref, server))) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    total, calls = full["cost_usd"], full["llm_calls"]
    assert calls == 4 * 3 * 4 and total > 0

    db = tmp_path / "g.db"
    _personas(db, 4)
    limit = round(total / 3, 6)
    code = main(["generate", *args(db, server, f"budget.usd={limit}")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    (line,) = [e for e in err if "budget" in e]
    assert line.startswith("aloe generate: budget reached: run 1 (generate) has spent $")
    assert f"of budget.usd={limit:g}" in line and "raise budget.usd and run the same command again" in line
    (status, stats), = _rows(db, "SELECT status, stats FROM runs")
    stats = json.loads(stats)
    spent = _rows(db, "SELECT SUM(cost_usd) FROM llm_calls")[0][0]
    n_first = _rows(db, "SELECT COUNT(*) FROM llm_calls")[0][0]
    assert status == "interrupted" and stats["budget"]["reached"] is True
    assert stats["budget"]["spent_usd"] == pytest.approx(spent, abs=1e-6)  # every finished call was recorded
    assert spent >= limit and n_first < calls  # stopped at the limit, before the end
    # no request was sent once the limit was reached: the calls recorded after the spend crossed it were in
    # flight then, at most backend.concurrency (4) with the one that crossed it
    assert recorded_after_crossing(db, limit) <= 3

    # the same limit again: the run spent it already, so nothing new starts
    assert main(["generate", *args(db, server, f"budget.usd={limit}")]) == 4
    assert _rows(db, "SELECT COUNT(*) FROM llm_calls WHERE cached = 0")[0][0] == n_first
    capsys.readouterr()

    # a higher limit: the same run resumes and finishes, every tree and node once
    assert main(["generate", *args(db, server, f"budget.usd={total * 10}")]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["run_id"] == 1 and done["resumed"] and done["trees_complete"] == 4
    assert _rows(db, "SELECT COUNT(*), COUNT(DISTINCT persona_id) FROM trees") == [(4, 4)]
    assert _rows(db, "SELECT COUNT(*), COUNT(DISTINCT tree_id || ':' || branch) FROM nodes") == [(12, 12)]
    assert _rows(db, "SELECT status FROM runs") == [("complete",)]
    # the resumed trees are the uninterrupted run's (same seeds, same replies)
    shape = "SELECT t.seed, n.branch, n.user_message FROM nodes n JOIN trees t ON t.id = n.tree_id ORDER BY 1, 2"
    assert _rows(db, shape) == _rows(ref, shape)


def test_a_budget_with_an_unknown_price_is_refused_before_anything_is_written(tmp_path: Path, server: str) -> None:
    db = tmp_path / "u.db"
    cfg = compose_config("generate", [a for a in args(db, server, "budget.usd=1") if a != PRICE])
    with pytest.raises(ConfigError, match=r"budget.usd=1.0.*house-model-7b.*price is unknown.*pricing.models") as e:
        generate.run(cfg)
    assert "\n" not in str(e.value) and not db.exists()
    # a free kind (embedded) is priced: a budget is accepted by the check
    generate.validate(compose_config("generate", [f"db={db}", "budget.usd=1"]))


def test_budget_reached_is_one_line_with_exit_code_4() -> None:
    err = BudgetReached(7, "evaluate", 1.23456, 1.2)
    assert err.exit_code == 4 and "\n" not in str(err)
    assert "run 7 (evaluate) has spent $1.2346 of budget.usd=1.2" in str(err)


def test_a_budget_is_kept_by_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """N worker processes (or Ray shards) would each spend up to the limit: with budget.usd the
    default worker count is 1, and asking for more workers or Ray is one config error."""
    from aloesim.orchestration._generate import GenerationSettings
    from aloesim.orchestration._workers import TREES_PER_WORKER, worker_count

    monkeypatch.setattr("aloesim.orchestration._workers.cores", lambda: 2)
    assert worker_count(GenerationSettings(), TREES_PER_WORKER * 2) == 2
    assert worker_count(GenerationSettings(), TREES_PER_WORKER * 2, one_process=True) == 1
    db = tmp_path / "w.db"
    for extra in ("generation.workers=2", "generation.engine=ray"):
        with pytest.raises(ConfigError, match=r"budget.usd=1.0 is not allowed.*kept by one process") as e:
            generate.validate(compose_config("generate", [f"db={db}", "budget.usd=1", extra]))
        assert "\n" not in str(e.value) and not db.exists()
    generate.validate(compose_config("generate", [f"db={db}", "budget.usd=1", "generation.workers=1"]))
