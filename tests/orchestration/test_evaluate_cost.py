"""``aloe evaluate dry_run=true`` and ``budget.usd`` for evaluations (issue 16.2),
against the loopback OpenAI-compatible server (benchmarks/latency_server.py)
serving a model priced by an override: the dry run plans exactly the calls a
real evaluation makes, per role, and writes nothing; a budget stops the
evaluation cleanly and a higher one finishes it, every turn stored once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from latency_server import ServerConfig, serve_in_thread
from test_budget import recorded_after_crossing  # sibling test module

from aloesim.core.errors import ConfigError
from aloesim.orchestration._config import compose_config
from aloesim.orchestration.cli import main
from aloesim.orchestration.commands import evaluate

PRICE = "pricing.models=[{model: house-model-7b, input: 100.0, output: 400.0}]"


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(ServerConfig(latency=0.01, seed=4)) as root:
        yield root


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    p, q = tmp_path / "profiles.jsonl", tmp_path / "personalities.jsonl"
    p.write_text('"A 30-year-old baker in Lyon who climbs on weekends."\n"A retired postman who breeds pigeons."\n'
                 '"A marine biologist in Hobart who restores old radios."\n')
    q.write_text('"Sarcastic and brief."\n"Gentle, curious, asks many questions."\n')
    return p, q


def args(tmp_path: Path, files: tuple[Path, Path], root: str, *more: str) -> list[str]:
    p, q = files
    url = f"{root}/v1"
    return [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}", f"benchmark.personalities={q}",
            f"evaluation.out_dir={tmp_path / 'out'}", "benchmark.turns=3", "evaluation.bootstrap=100",
            "evaluation.concurrency=3", "evaluation.judge_check.pairs=4", "backend=openai", f"backend.base_url={url}",
            "backend.api_key_env=null", "backend.dialect=openai", "backend.model=house-model-7b",
            "backend.concurrency=3", "model=openai", f"model.base_url={url}", "model.name=house-model-7b",
            "model.api_key_env=null", PRICE, *more]


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_the_dry_run_plans_exactly_the_evaluations_calls_per_role(tmp_path, files, server, capsys, monkeypatch):
    more = ("evaluation.judge_check.preference=true", "evaluation.second_judge=default")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a dry run needs no key
    keyed = [a for a in args(tmp_path, files, server, "dry_run=true") if a != "backend.api_key_env=null"]
    assert evaluate.run(compose_config("evaluate", keyed)) == 0
    capsys.readouterr()
    assert evaluate.run(compose_config("evaluate", args(tmp_path, files, server, "dry_run=true", *more))) == 0
    out = capsys.readouterr()
    plan = json.loads(out.out)
    db = tmp_path / "e.db"
    assert not db.exists() and not (tmp_path / "out").exists()  # nothing written, no database created
    assert plan["dry_run"] is True and (plan["cases"], plan["turns"]) == (6, 3)
    assert "aloe evaluate: dry run: 6 cases x 3 turns" in out.err and "nothing was called" in out.err
    planned = {r: v["calls"] for r, v in plan["roles"].items()}
    assert planned == {"user": 18, "evaluated": 18, "judge": 18, "judge_check": 8, "judge_check_preference": 8,
                       "second_judge": 18}
    for role in plan["roles"].values():  # every call priced by the override: input and output tokens
        assert role["cost_usd"] == pytest.approx((100 * role["prompt_tokens"] + 400 * role["completion_tokens"])
                                                 / 1e6, rel=1e-6)

    assert evaluate.run(compose_config("evaluate", args(tmp_path, files, server, *more))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    recorded = dict(_rows(db, "SELECT role, COUNT(*) FROM llm_calls GROUP BY role"))
    # the preference judge's probes are recorded as judge_check (the plan shows them apart: their model may differ)
    planned["judge_check"] += planned.pop("judge_check_preference")
    assert recorded == planned and summary["failed_cases"] == 0
    assert _rows(db, "SELECT COUNT(*) FROM llm_calls WHERE attempts > 1") == [(0,)]  # no retries: counts compare
    assert summary["cost_usd"] <= plan["cost_usd"]  # every reply at its max_tokens: an upper bound
    # a database that exists is only read by a dry run
    before = db.stat().st_mtime_ns, _rows(db, "SELECT COUNT(*) FROM runs")
    assert evaluate.run(compose_config("evaluate", args(tmp_path, files, server, "dry_run=true", *more))) == 0
    assert (db.stat().st_mtime_ns, _rows(db, "SELECT COUNT(*) FROM runs")) == before


def test_the_budget_stops_an_evaluation_and_a_higher_one_finishes_it(tmp_path, files, server, capsys) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    assert evaluate.run(compose_config("evaluate", args(ref, files, server))) == 0
    total = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cost_usd"]
    assert total > 0
    limit = round(total / 3, 6)
    db = tmp_path / "e.db"
    assert main(["evaluate", *args(tmp_path, files, server, f"budget.usd={limit}")]) == 4
    (line,) = [e for e in capsys.readouterr().err.splitlines() if "budget" in e]
    assert line.startswith("aloe evaluate: budget reached: run 1 (evaluate) has spent $")
    assert f"of budget.usd={limit:g}" in line
    (status,), = _rows(db, "SELECT status FROM runs")
    spent, n = _rows(db, "SELECT SUM(cost_usd), COUNT(*) FROM llm_calls")[0]
    assert n < _rows(ref / "e.db", "SELECT COUNT(*) FROM llm_calls")[0][0]  # stopped before the end
    assert status == "interrupted" and spent >= limit and not (tmp_path / "out" / "report.json").exists()
    # in flight when the spend crossed the limit: at most 3 on the user/judge backend (backend.concurrency)
    # and 3 on the evaluated model's (one per case in flight): every other call was never sent
    assert recorded_after_crossing(db, limit) <= 5

    assert main(["evaluate", *args(tmp_path, files, server, f"budget.usd={total * 10}")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "complete" and summary["resumed"] and summary["failed_cases"] == 0
    assert _rows(db, "SELECT status FROM runs") == [("complete",)]
    assert _rows(db, "SELECT COUNT(*), COUNT(DISTINCT case_id || ':' || turn) FROM eval_turns") == [(18, 18)]
    assert (tmp_path / "out" / "report.json").exists()


def test_a_budget_with_an_unknown_price_is_refused(tmp_path, files, server) -> None:
    cfg = compose_config("evaluate", [a for a in args(tmp_path, files, server, "budget.usd=0.5") if a != PRICE])
    with pytest.raises(ConfigError, match=r"budget.usd=0.5.*agents.user calls 'house-model-7b'"):
        evaluate.run(cfg)
    assert not (tmp_path / "e.db").exists()


@pytest.mark.integration
@pytest.mark.slow  # about 30-60 s on a loaded 2-core machine: each SmolLM2 call takes seconds there
def test_a_budget_stops_and_resumes_a_real_evaluation(tmp_path, files, embedded_url, capsys) -> None:
    """SmolLM2 (llama.cpp) as user, judge and evaluated model, priced by an override: the budget stops
    real calls of real lengths, and a higher one finishes the evaluation, every turn stored once."""
    p, q = files
    common = [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}", f"benchmark.personalities={q}",
              f"evaluation.out_dir={tmp_path / 'out'}", f"+backend.base_url={embedded_url}", "benchmark.cases=1",
              "benchmark.turns=1", "agents.user.max_tokens=24", "model.max_tokens=16", "agents.judge.max_tokens=12",
              "evaluation.judge_check.pairs=2", "evaluation.bootstrap=100",
              "pricing.models=[{model: SmolLM2-135M-Instruct, input: 100.0, output: 400.0}]"]
    assert main(["evaluate", *common, "budget.usd=0.05"]) == 4
    assert "budget reached: run 1 (evaluate)" in capsys.readouterr().err
    db = tmp_path / "e.db"
    (spent, n), = _rows(db, "SELECT SUM(cost_usd), COUNT(*) FROM llm_calls")
    assert spent >= 0.05 and n < 1 * 1 * 3 + 4 and _rows(db, "SELECT status FROM runs") == [("interrupted",)]
    assert main(["evaluate", *common, "budget.usd=100"]) in (0, 3)  # 3: a case the tiny model could not finish
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["resumed"] and summary["cost_usd"] >= spent
    assert _rows(db, "SELECT COUNT(*) = COUNT(DISTINCT case_id || ':' || turn) FROM eval_turns") == [(1,)]
    assert _rows(db, "SELECT status FROM runs") != [("interrupted",)]


def test_a_dry_run_of_an_hf_checkpoint_loads_nothing(tmp_path, files, capsys, monkeypatch) -> None:
    from aloesim.agents.hf import HFChatModel

    def refuse(*a, **k):
        raise AssertionError("a dry run must not load the model")

    monkeypatch.setattr(HFChatModel, "load", refuse)
    monkeypatch.setattr(HFChatModel, "__init__", refuse)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    p, q = files
    cfg = compose_config("evaluate", [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}",
                                      f"benchmark.personalities={q}", f"evaluation.out_dir={tmp_path / 'out'}",
                                      "model=hf", f"model.path={ckpt}", "benchmark.turns=2", "dry_run=true"])
    assert evaluate.run(cfg) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["roles"]["evaluated"]["kind"] == "hf" and plan["roles"]["evaluated"]["cost_usd"] == 0.0
    assert plan["roles"]["evaluated"]["calls"] == 6 * 2 and not (tmp_path / "e.db").exists()


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_bad_budget_is_one_line(tmp_path, files, server, value) -> None:
    with pytest.raises(ConfigError, match="budget.usd") as e:
        evaluate.run(compose_config("evaluate", args(tmp_path, files, server, f"budget.usd={value}")))
    assert "\n" not in str(e.value) and not (tmp_path / "e.db").exists()
