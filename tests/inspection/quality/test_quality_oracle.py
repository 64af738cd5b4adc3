"""Each quality metric reads what the oracle world planted
(tests/support/oracle_world.py): ``aloe generate`` against the world, then the
report. The world's record of what it served is the right answer: the report
must count exactly the planted leaks, role flips, truncations and duplicate
pairs, at about the rates asked for; length bias and judge agreement follow
the world's knobs; with the real MiniLM, revelation rises turn by turn
because the world's user reveals one fact per turn."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
import structlog

from aloesim.environment.personas import SentenceEmbedder
from aloesim.environment.store import connect
from aloesim.inspection.quality import build_quality_report
from aloesim.orchestration.cli import main
from tests.support.quality_trees import TreeBuilder

oracle = pytest.importorskip("tests.support.oracle_world", reason="the oracle world fixture is not in this checkout")

TREES, TURNS = 18, 6  # 108 user messages; every oracle profile has 6 facts


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def grow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world, *extra: str) -> Path:
    """The oracle personas (6 profiles x 3 personalities) in a fresh database, then
    ``aloe generate`` against the world."""
    db = tmp_path / "oracle.db"
    with TreeBuilder(db, finish_reason=False) as b:
        for profile in oracle.PROFILES:
            for personality in oracle.PERSONALITIES:
                b.persona(profile, personality)
    monkeypatch.setenv("ALOE_ORACLE_KEY", "unused")
    with world as url:
        code = main(["generate", f"db={db}", f"generation.trees={TREES}", f"generation.turns={TURNS}",
                     "backend=openai", f"backend.base_url={url}", "backend.api_key_env=ALOE_ORACLE_KEY",
                     "backend.model=oracle", "backend.dialect=openai", "cache=false", "log.level=WARNING", *extra])
    assert code == 0
    return db


def report(db: Path, embedder=None) -> dict:
    conn = connect(db, readonly=True)
    try:
        return build_quality_report(conn, 1, embedder=embedder)
    finally:
        conn.close()


def test_leaks_truncations_and_duplicate_pairs_are_counted_as_planted(tmp_path, monkeypatch) -> None:
    world = oracle.OracleWorld(leak_rate=0.1, truncate_rate=0.1, duplicate_rate=0.1, seed=11)
    db = grow(tmp_path, monkeypatch, world)
    r = report(db)
    m = r["metrics"]
    nodes = TREES * TURNS
    assert r["run"]["nodes"] == nodes and world.count("user") == nodes
    leaks = world.planted("leak", role="user")
    assert (m["leakage"]["count"], m["leakage"]["of"]) == (leaks, nodes)
    assert abs(m["leakage"]["value"] - 0.10) < 0.06
    duplicate_nodes = world.planted("duplicate", role="preferred")  # drawn per user message: p == r
    assert m["duplicates"]["kinds"].get("pair", 0) == duplicate_nodes and abs(duplicate_nodes / nodes - 0.1) < 0.06
    conn = connect(db, readonly=True)
    recorded = any(r_[1] == "finish_reason" for r_ in conn.execute("PRAGMA table_info(llm_calls)"))
    conn.close()
    t = m["truncation"]
    if recorded:  # the gateway records finish_reason: every planted cut is counted, nothing else
        cut = world.planted("truncated")
        assert (t["count"], t["of"], t["unknown"]) == (cut, 4 * nodes, 0)
        assert abs(cut / (2 * nodes) - 0.9 * 0.1) < 0.05  # replies drawn as duplicates are never cut
    else:  # a checkout whose gateway does not record it: the world's cuts are not at max_tokens
        assert t["inferred"] == 4 * nodes
    assert m["role_flips"]["count"] == 0 and m["empty"]["count"] == 0  # empties are retried, never stored


def test_role_flips_length_bias_and_a_position_biased_judge(tmp_path, monkeypatch) -> None:
    world = oracle.OracleWorld(role_flip_rate=0.1, length_ratio=2.0, judge="position", seed=4)
    db = grow(tmp_path, monkeypatch, world, "generation.preference_check=true")
    m = report(db)["metrics"]
    flips = world.planted("role_flip", role="user")
    assert (m["role_flips"]["count"], m["role_flips"]["patterns"]) == (flips, {"ai_self_reference": flips})
    assert abs(flips / (TREES * TURNS) - 0.1) < 0.06
    lb = m["length_bias"]  # the preferred reply is planted twice as long (in tokens = words here)
    assert lb["unit"] == "tokens" and lb["value"] == pytest.approx(2.0, abs=0.05) and lb["flagged"] is True
    j = m["judge_agreement"]  # "A" in both orders: the verdict follows the position every time
    assert (j["judged"], j["split"], j["value"], j["flagged"]) == (TREES * TURNS, TREES * TURNS, 0.0, True)


def test_a_fair_world_flags_only_its_static_rejected_replies_repeating_themselves(tmp_path, monkeypatch) -> None:
    world = oracle.OracleWorld(judge="coverage", seed=2)
    db = grow(tmp_path, monkeypatch, world, "generation.preference_check=true")
    r = report(db)
    m = r["metrics"]
    assert m["judge_agreement"]["value"] == 1.0 and m["judge_agreement"]["flagged"] is False
    assert m["leakage"]["count"] == m["role_flips"]["count"] == m["empty"]["count"] == 0
    assert m["length_bias"]["value"] == pytest.approx(1.0, abs=0.05) and m["length_bias"]["flagged"] is False
    # the world's rejected responder says the same filler every turn: a node repeats an earlier reply
    # exactly when its conversation already continued a rejected reply ('r' in its branch)
    conn = connect(db, readonly=True)
    after_rejected = conn.execute("SELECT COUNT(*) FROM nodes WHERE instr(branch, 'r') > 0").fetchone()[0]
    conn.close()
    assert m["duplicates"]["kinds"] == {"reply_repeat": after_rejected} and after_rejected > 0
    assert [f.split()[0] for f in r["flags"]] == ["duplicates"]


@pytest.mark.integration
def test_revelation_rises_turn_by_turn_in_the_oracle_world(tmp_path, monkeypatch) -> None:
    db = grow(tmp_path, monkeypatch, oracle.OracleWorld(seed=7))
    r = report(db, SentenceEmbedder())
    rev = [t["revelation"] for t in r["per_turn"]]
    print("oracle revelation per turn (MiniLM):", rev)
    assert all(a < b for a, b in itertools.pairwise(rev)), rev
    assert r["metrics"]["revelation"]["flagged"] is False and r["metrics"]["revelation"]["slope"] > 0.03
    assert r["metrics"]["diversity"]["flagged"] is False
