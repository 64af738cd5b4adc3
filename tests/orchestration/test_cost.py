"""Dollars of a run (issue 16.2), end to end against a loopback OpenAI-compatible
server (benchmarks/latency_server.py) serving a model called gpt-4o: the summary
line, ``aloe runs`` and ``aloe show run=`` carry the run's dollars in total, per
role and per model, equal to genai-prices' own price of the stored token counts;
an unknown model says "unknown", never $0."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import genai_prices
import pytest
from latency_server import ServerConfig, serve_in_thread
from test_estimate import _personas  # sibling test module

from aloesim.inspection import list_run_rows, runs_plain_table
from aloesim.orchestration import compose_config
from aloesim.orchestration.commands import generate, show


def library(model: str, prompt: int, completion: int) -> float:
    usage = genai_prices.Usage(input_tokens=prompt, output_tokens=completion)
    return float(genai_prices.calc_price(usage, model).total_price)


def overrides(db: Path, root: str, model: str, *extra: str) -> list[str]:
    return [f"db={db}", "generation.trees=2", "generation.turns=2", "generation.progress=off", "backend=openai",
            f"backend.base_url={root}/v1", "backend.api_key_env=null", "backend.dialect=openai",
            f"backend.model={model}", *extra]


@pytest.fixture(scope="module")
def server():
    with serve_in_thread(ServerConfig(latency=0.0, seed=2)) as root:
        yield root


def test_the_summary_runs_and_show_carry_the_runs_dollars(tmp_path: Path, server: str, capsys) -> None:
    db = tmp_path / "g.db"
    _personas(db, 2)
    assert generate.run(compose_config("generate", overrides(db, server, "gpt-4o"))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT role, prompt_tokens, completion_tokens FROM llm_calls").fetchall()
    by_role: dict[str, float] = {}
    for role, p, c in calls:
        by_role[role] = by_role.get(role, 0.0) + library("gpt-4o", p, c)
    expected = sum(by_role.values())
    assert summary["llm_calls"] == len(calls) == 16 and expected > 0
    assert summary["cost_usd"] == pytest.approx(expected, abs=1e-6) and summary["unpriced_calls"] == 0
    assert summary["cost_by_model"] == {"gpt-4o": {"cost_usd": pytest.approx(expected, abs=1e-6),
                                                   "unpriced_calls": 0}}
    assert {r: v["cost_usd"] for r, v in summary["cost_by_role"].items()} == pytest.approx(by_role, abs=1e-6)

    (listed,) = list_run_rows(str(db))
    assert listed["cost_usd"] == pytest.approx(expected) and listed["unpriced_calls"] == 0
    table = runs_plain_table([listed])
    assert "dollars" in table.splitlines()[0] and f"${expected:.4g}" in table

    assert show.run(compose_config("show", [f"db={db}", "run=1", "show.format=json"])) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert show.run(compose_config("show", [f"db={db}", "run=1", "show.width=200"])) == 0
    text = capsys.readouterr().out
    assert f"${expected:.4g} (gpt-4o ${expected:.4g})" in text


def test_an_unknown_model_says_unknown_not_zero(tmp_path: Path, server: str, capsys) -> None:
    db = tmp_path / "u.db"
    _personas(db, 2)
    assert generate.run(compose_config("generate", overrides(db, server, "house-model-7b"))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cost_usd"] is None and summary["unpriced_calls"] == summary["llm_calls"] == 16
    (listed,) = list_run_rows(str(db))
    assert listed["cost_usd"] is None and "unknown" in runs_plain_table([listed]) and "$0" not in \
        runs_plain_table([listed])
    assert show.run(compose_config("show", [f"db={db}", "run=1", "show.width=200"])) == 0
    assert "house-model-7b unknown" in capsys.readouterr().out


def test_an_override_prices_a_custom_model(tmp_path: Path, server: str, capsys) -> None:
    db = tmp_path / "o.db"
    _personas(db, 2)
    cfg = compose_config("generate", overrides(
        db, server, "house-model-7b", "pricing.models=[{model: house-model-7b, input: 2.0, output: 8.0}]"))
    assert generate.run(cfg) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with sqlite3.connect(db) as conn:
        p, c = conn.execute("SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM llm_calls").fetchone()
    assert summary["cost_usd"] == pytest.approx((2.0 * p + 8.0 * c) / 1e6, abs=1e-6)


# -- dry runs ----------------------------------------------------------------------------------------------------

def test_a_dry_run_calls_nothing_writes_nothing_and_prices_the_plan(tmp_path: Path, capsys, monkeypatch) -> None:
    db = tmp_path / "none.db"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a dry run needs no key
    cfg = compose_config("generate", [f"db={db}", "dry_run=true", "backend=openai", "generation.trees=10",
                                      "generation.turns=3", "backend.base_url=http://127.0.0.1:9/v1"])
    assert generate.run(cfg) == 0  # port 9: nothing listens; nothing is called
    out = capsys.readouterr()
    plan = json.loads(out.out)
    assert not db.exists()
    assert plan["dry_run"] is True and plan["calls"] == 10 * 3 * 4 and plan["personas_from"] == "seeds"
    role = plan["roles"]["inducer"]
    one = library("gpt-4o", int(role["prompt_tokens"] / role["calls"]), int(role["completion_tokens"] / role["calls"]))
    assert role["cost_usd"] == pytest.approx(one * role["calls"], rel=1e-6) and role["price"] == "genai-prices"
    assert plan["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in plan["roles"].values()), abs=1e-5)
    assert "dry run: 10 trees x 3 turns (path) = 30 nodes, 120 LLM calls" in out.err
    half = compose_config("generate", [f"db={db}", "dry_run=true", "backend=openai", "generation.trees=10",
                                       "generation.turns=3", "pricing.completion_fraction=0.5"])
    assert generate.run(half) == 0
    smaller = json.loads(capsys.readouterr().out)
    assert smaller["calls"] == plan["calls"] and smaller["completion_tokens"] < plan["completion_tokens"]
    assert smaller["prompt_tokens"] < plan["prompt_tokens"]  # the history grows by the shorter replies too


def test_a_dry_run_of_a_local_model_is_free_and_of_an_unknown_one_unknown(tmp_path: Path, capsys) -> None:
    assert generate.run(compose_config("generate", [f"db={tmp_path / 'a.db'}", "dry_run=true"])) == 0
    assert json.loads(capsys.readouterr().out)["cost_usd"] == 0.0  # embedded: free
    assert generate.run(compose_config("generate", [f"db={tmp_path / 'a.db'}", "dry_run=true", "backend=openai",
                                                    "backend.model=house-model-7b"])) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["cost_usd"] is None and "unknown" in out.err and "$0" not in out.err


# tokens of the loopback server's replies are far below max_tokens: the plan is an upper bound at fraction 1,
# and within this factor of what the run used (prompt tokens: template + persona + history)
PROMPT_TOLERANCE = 3.0


def test_the_dry_runs_calls_are_the_runs_calls(tmp_path: Path, server: str, capsys) -> None:
    db = tmp_path / "g.db"
    _personas(db, 3)
    args = overrides(db, server, "gpt-4o", "generation.trees=3", "generation.turns=3",
                     "generation.preference_check=true")
    assert generate.run(compose_config("generate", [*args, "dry_run=true"])) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["personas_from"] == "database"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0  # nothing written
    assert generate.run(compose_config("generate", args)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["llm_calls"] == plan["calls"] == 3 * 3 * 6  # exact (the check asks twice per node)
    assert {r: v["calls"] for r, v in plan["roles"].items()} == (
        _calls_by_role(db))
    assert summary["prompt_tokens"] <= plan["prompt_tokens"] <= PROMPT_TOLERANCE * summary["prompt_tokens"]
    assert summary["completion_tokens"] <= plan["completion_tokens"]
    assert summary["cost_usd"] <= plan["cost_usd"]


def _calls_by_role(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT role, COUNT(*) FROM llm_calls GROUP BY role").fetchall())
