"""The quality report against the real parts: the bundled all-MiniLM-L6-v2
embedder on realistic hand-built trees (revelation and diversity), and
``aloe generate`` + ``aloe quality`` on the embedded SmolLM2-135M server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aloesim.environment.personas import SentenceEmbedder
from aloesim.inspection.quality import build_quality_report
from tests.support.quality_trees import PROFILES, TreeBuilder, Turn

pytestmark = pytest.mark.integration
ALOE = str(Path(sys.executable).with_name("aloe"))

# what a careful inducer extracts, turn by turn: more of the profile each time
CONVERSATIONS = [
    (PROFILES[0], [
        ("Hi! The tomatoes in my plot are finally turning red.", None, None),
        ("I used to teach history for thirty years, so I love a good story.",
         "Grows tomatoes in a community garden.", "Loves long stories."),
        ("Retirement in Lyon suits me, I spend my Saturdays at the library.",
         "Retired history teacher who grows tomatoes in a community garden.", "Talkative, loves long stories."),
        ("Beans next year, heirloom ones. Any ideas for a shady corner?",
         ("Retired history teacher from Lyon who grows tomatoes and heirloom beans in a community garden and "
          "volunteers at the local library on weekends."), "Warm, talkative and curious; loves long stories."),
    ]),
    (PROFILES[1], [
        ("Just got off a twelve hour shift, I'm wiped.", None, None),
        ("ER nights are brutal. Running is the only thing that resets my brain.",
         "Works night shifts.", "Direct."),
        ("My two girls think I'm crazy for training for another marathon.",
         "Works night shifts as an emergency nurse and runs to clear her head.", "Direct, pragmatic."),
        ("Chicago winters make long runs miserable though. Treadmill or suck it up?",
         "Works night shifts as an emergency nurse in Chicago, has two teenage daughters, and runs marathons.",
         "Direct, pragmatic and a little sarcastic."),
    ]),
    (PROFILES[2], [
        ("I finished the last spread of a picture book today!", None, None),
        ("It's about a cat who gets lost in Osaka, my own three were the models.",
         "Draws children's books.", None),
        ("Freelancing is lonely sometimes, kendo practice is my social life.",
         "Freelance illustrator in Osaka who draws children's books and keeps three cats.", "Shy at first."),
        ("Sorry for the long messages, once I get comfortable I can't stop.",
         ("Freelance illustrator in Osaka who draws children's books, keeps three cats and practises kendo twice "
          "a week."), "Shy at first, playful once comfortable."),
    ]),
]


def write_conversations(path: Path, *, same_message: str | None = None, copy_persona: bool = False) -> int:
    with TreeBuilder(path) as b:
        run = b.run(turns=4)
        for (profile, personality), turns in CONVERSATIONS:
            t = b.tree(run, b.persona(profile, personality), turns=4)
            b.conversation(t, [Turn(same_message or msg, inferred=(profile, personality) if copy_persona else (ip, iq))
                               for msg, ip, iq in turns])
        return run


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def report(path: Path, run: int, embedder: SentenceEmbedder) -> dict:
    b = TreeBuilder(path)
    try:
        return build_quality_report(b.conn, run, embedder=embedder)
    finally:
        b.close()


def test_revelation_rises_as_the_inducer_extracts_more_and_distinct_users_are_diverse(tmp_path, embedder) -> None:
    path = tmp_path / "good.db"
    r = report(path, write_conversations(path), embedder)
    rev = [t["revelation"] for t in r["per_turn"]]
    print("revelation per turn (MiniLM):", rev, "diversity:", [t["diversity"] for t in r["per_turn"]])
    assert rev[0] == 0.0  # nothing inferred at turn 1
    assert rev[0] < rev[1] < rev[2] < rev[3] and rev[3] > 0.6
    m = r["metrics"]
    assert m["revelation"]["slope"] > 0.1 and m["revelation"]["flagged"] is False
    assert m["diversity"]["flagged"] is False and m["diversity"]["lowest"] > 0.5
    assert r["embedder"] == "all-MiniLM-L6-v2"


def test_a_copied_persona_gives_flat_revelation_and_one_template_message_no_diversity(tmp_path, embedder) -> None:
    path = tmp_path / "bad.db"
    r = report(path, write_conversations(path, same_message="Hi! How are you today?", copy_persona=True), embedder)
    rev = [t["revelation"] for t in r["per_turn"]]
    print("revelation per turn (copied persona):", rev)
    assert all(v == pytest.approx(1.0, abs=1e-4) for v in rev)  # inferred == true persona from turn 1
    m = r["metrics"]
    assert m["revelation"]["flagged"] is True  # slope ~0: it does not rise
    assert m["diversity"]["flagged"] is True and m["diversity"]["lowest"] == pytest.approx(0.0, abs=1e-4)
    assert m["duplicates"]["count"] == 9  # turns 2-4 repeat turn 1's message in every tree


def test_generate_on_the_embedded_model_then_quality(tmp_path: Path, embedded_url: str) -> None:
    """SmolLM2-135M with a 16-token budget for the user: its messages are cut, and
    the report's truncation must equal what the call records say."""
    db = tmp_path / "real.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ALOE_TEST_KEY": "unused"}
    gen = subprocess.run(
        [ALOE, "generate", f"db={db}", "generation.trees=2", "generation.turns=2", "backend=openai",
         f"backend.base_url={embedded_url}", "backend.api_key_env=ALOE_TEST_KEY", "backend.dialect=llamacpp",
         "backend.model=SmolLM2-135M-Instruct", "backend.concurrency=1", "agents.user.max_tokens=16",
         "agents.preferred.max_tokens=48", "agents.rejected.max_tokens=48", "agents.inducer.max_tokens=96",
         "log.level=WARNING"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert gen.returncode == 0, gen.stderr[-3000:]
    out = tmp_path / "q"
    done = subprocess.run([ALOE, "quality", f"db={db}", f"quality.out_dir={out}", "log.level=WARNING"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    r = json.loads((out / "quality.json").read_text())
    assert r["run"]["nodes"] == 4 and r["embedder"] == "all-MiniLM-L6-v2"
    assert all(t["revelation"] is not None for t in r["per_turn"])
    # ground truth from the records: per node, the last successful call of each role
    conn = sqlite3.connect(db)
    cols = {row[1] for row in conn.execute("PRAGMA table_info(llm_calls)")}
    finish = "finish_reason" if "finish_reason" in cols else "NULL"
    rows = conn.execute(
        f"SELECT tree_id, turn, branch, role, {finish}, completion_tokens, json_extract(request, '$.max_tokens')"
        " FROM llm_calls WHERE error IS NULL AND role IN ('user', 'inducer', 'preferred', 'rejected') ORDER BY id"
    ).fetchall()
    conn.close()
    last = {(t, k, b, role): (reason, used, cap) for t, k, b, role, reason, used, cap in rows}
    cut = sum((reason or ("length" if used >= cap else "stop")) == "length" for reason, used, cap in last.values())
    t = r["metrics"]["truncation"]
    print("truncation on SmolLM2-135M:", t)
    assert (t["count"], t["of"]) == (cut, len(last)) and cut >= 1
    assert t["by_role"].get("user", 0) >= 1  # 16 tokens are rarely enough for this model's opening message
