"""What a generate run will ask of its models (issue 14.7): the calls per role
(exact) and the tokens with every reply at its limit, printed before the first call when
``generation.estimate=true`` (experiment=paper), and kept in the run's stats."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from latency_server import ServerConfig, serve_in_thread

from aloesim.environment import Persona
from aloesim.environment.store import connect
from aloesim.orchestration import check_config, compose_config
from aloesim.orchestration._estimate import CHARS_PER_TOKEN, estimate_generation
from aloesim.orchestration._generate import GenerationSettings
from aloesim.orchestration.commands import generate

PERSONAS = [Persona(i, "p" * 400, "q" * 400) for i in range(3)]  # 800 characters = 200 tokens of persona each
PROMPTS = {"user": "U" * 40 + "{profile}{personality}", "inducer": "I" * 80 + "{history}{profile}{personality}",
           "preferred": "{message}" + "P" * 40 + "{inferred}", "rejected": "{message}",
           "preference": "J" * 40 + "{profile}{personality}{history}{message}{reply_a}{reply_b}"}
LIMITS = {"user": 100, "inducer": 50, "preferred": 200, "rejected": 200, "preference_judge": 10}


def test_path_mode_counts_four_calls_per_node() -> None:
    e = estimate_generation(GenerationSettings(turns=4), PROMPTS, LIMITS, PERSONAS)
    assert (e.trees, e.nodes, e.calls) == (3, 12, 48)
    assert {r: load.calls for r, load in e.roles.items()} == dict.fromkeys(
        ("user", "inducer", "preferred", "rejected"), 12)
    assert e.roles["user"].completion_tokens == 12 * 100 and e.roles["preferred"].completion_tokens == 12 * 200


def test_the_preference_check_asks_twice_per_node() -> None:
    e = estimate_generation(GenerationSettings(turns=4, preference_check=True), PROMPTS, LIMITS, PERSONAS)
    assert e.roles["preference_judge"].calls == 24 and e.calls == 72


@pytest.mark.parametrize(("turns", "budget", "nodes"), [(4, 64, 15), (4, 6, 6), (10, 64, 64), (1, 64, 1)])
def test_full_mode_counts_nodes_breadth_first_up_to_the_budget(turns: int, budget: int, nodes: int) -> None:
    e = estimate_generation(GenerationSettings(mode="full", turns=turns, node_budget=budget), PROMPTS, LIMITS,
                            PERSONAS[:1])
    assert e.nodes == nodes and e.calls == 4 * nodes


def test_the_token_bound_follows_prompts_personas_and_limits() -> None:
    one = estimate_generation(GenerationSettings(turns=1), PROMPTS, LIMITS, PERSONAS[:1]).roles
    persona = 800 / CHARS_PER_TOKEN
    assert one["user"].prompt_tokens >= 40 / CHARS_PER_TOKEN + persona          # template + persona
    assert one["rejected"].prompt_tokens >= LIMITS["user"]                       # m_1 at its limit
    assert one["preferred"].prompt_tokens >= LIMITS["user"] + LIMITS["inducer"]  # m_1 + the inferred persona
    two = estimate_generation(GenerationSettings(turns=2), PROMPTS, LIMITS, PERSONAS[:1]).roles
    # turn 2 carries m_1 and s_1 at their limits in every prompt
    for role in ("user", "inducer", "preferred", "rejected"):
        assert two[role].prompt_tokens - 2 * one[role].prompt_tokens >= LIMITS["user"] + LIMITS["preferred"]
    longer = estimate_generation(GenerationSettings(turns=2), PROMPTS, LIMITS | {"user": 300}, PERSONAS[:1])
    assert longer.prompt_tokens > estimate_generation(GenerationSettings(turns=2), PROMPTS, LIMITS,
                                                      PERSONAS[:1]).prompt_tokens


def test_the_paper_scale_line() -> None:
    cfg = compose_config("generate", ["experiment=paper"])
    s = check_config(cfg)
    personas = [Persona(i, "x" * 450, "y" * 420) for i in range(3310)]  # the published items' typical lengths
    limits = {r: getattr(s.agents, r).max_tokens for r in ("user", "inducer", "preferred", "rejected")}
    e = estimate_generation(s.generation, cfg.prompts, limits, personas)
    assert (e.trees, e.nodes, e.calls) == (3310, 33_100, 132_400)
    assert e.completion_tokens == 33_100 * 4 * 300
    line = e.line()
    assert line.startswith("3,310 trees x 10 turns (path) = 33,100 nodes: 132,400 LLM calls")
    assert "if every reply reaches its max_tokens" in line
    assert e.as_dict()["basis"].startswith("every reply at its max_tokens")


def _personas(db: Path, n: int) -> None:
    conn = connect(db, create=True)
    with conn:
        for i in range(n):
            ids = [conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at) VALUES (?, 'train',"
                                " ?, 'seed', 0)", (kind, f"{kind} number {i}: likes sailing and puns.")).lastrowid
                   for kind in ("profile", "personality")]
            conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at) VALUES (?, ?, 'train', 0)",
                         ids)
    conn.close()


def test_generate_prints_the_estimate_first_and_its_calls_are_the_runs(tmp_path: Path, capsys) -> None:
    db = tmp_path / "g.db"
    _personas(db, 3)
    with serve_in_thread(ServerConfig(latency=0.0, seed=1)) as root:
        cfg = compose_config("generate", [
            f"db={db}", "generation.trees=3", "generation.turns=2", "generation.estimate=true",
            "generation.preference_check=true", "generation.progress=off", "backend=openai",
            f"backend.base_url={root}/v1", "backend.api_key_env=null", "backend.dialect=openai"])
        assert generate.run(cfg) == 0
    captured = capsys.readouterr()
    assert captured.err.count("aloe generate: 3 trees x 2 turns (path) = 6 nodes: 36 LLM calls") == 1
    stats = json.loads(captured.out.strip().splitlines()[-1])
    assert stats["llm_calls"] == 36 and stats["call_failures"] == 0 and stats["retries"] == 0
    with sqlite3.connect(db) as conn:
        stored = json.loads(conn.execute("SELECT stats FROM runs WHERE kind = 'generate'").fetchone()[0])
        completion = conn.execute("SELECT role, MAX(completion_tokens) FROM llm_calls GROUP BY role").fetchall()
    est = stored["estimate"]
    assert est["calls"] == 36 and est["roles"]["preference_judge"]["calls"] == 12
    assert stats["completion_tokens"] <= est["completion_tokens_at_limits"]
    assert all(tokens <= getattr(check_config(cfg).agents, role).max_tokens for role, tokens in completion)


def test_printing_the_estimate_does_not_change_the_runs_identity() -> None:
    from aloesim.orchestration._runs import identity, plain_config

    plain, shown = (plain_config(compose_config("generate", o)) for o in ([], ["generation.estimate=true"]))
    assert identity(plain) == identity(shown)  # the same run resumes whether or not it prints the estimate
