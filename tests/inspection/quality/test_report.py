"""The quality report on hand-built trees where every metric's right value is
known: per turn and overall, thresholds and flags, the files it writes, and
the viewer's section. Embeddings come from a lookup table here (exact
cosines); tests/inspection/quality/test_quality_real.py uses the real model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aloesim.core.errors import ConfigError
from aloesim.environment.quality import QualitySettings
from aloesim.inspection.quality import (
    build_quality_report,
    distinct_n,
    mean_pairwise_distance,
    quality_summary,
    render_markdown,
    run_quality_summary,
    summary_lines,
    write_quality_report,
)
from tests.support.quality_trees import AGREE, ALL_STOP, DISAGREE, PROFILES, SPLIT, TreeBuilder, Turn

(PA, QA), (PB, QB) = PROFILES[0], PROFILES[1]
RECITE = "Hi! I am a retired history teacher from Lyon who grows tomatoes and heirloom beans."
S60 = math.sqrt(0.75)


class LookupEmbedder:
    """Known vectors for known texts, so every cosine is exact."""

    name = "lookup"

    def __init__(self, table: dict[str, tuple[float, ...]]) -> None:
        self.table = table
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += list(texts)
        return np.array([self.table[t] for t in texts], dtype=np.float32)


TABLE = {
    f"{PA} {QA}": (1, 0, 0, 0), PA: (1, 0, 0, 0), QA: (0, 1, 0, 0), "half of A": (0.5, S60, 0, 0),
    f"{PB} {QB}": (0, 0, 1, 0), PB: (0, 0, 1, 0), QB: (0, 0, 0, 1),
    # user messages: turn 1 the same in both trees, turn 2 orthogonal, turn 3 at 60 degrees
    "Hi there!": (0, 0, 0, 1), RECITE: (1, 0, 0, 0), "Night shift again.": (0, 1, 0, 0),
    "Any plans for the weekend?": (0, 0, 1, 0), "How can I help you today?": (0, 0, 0.5, S60),
}


def reply(words: int, tag: str) -> str:
    return " ".join(["word"] * (words - 1) + [tag])


def build(path: Path, *, all_tokens: bool = False) -> dict[str, int]:
    """Run 1, two path trees of 3 turns (see the test for what each metric must read)."""
    with TreeBuilder(path) as b:
        run = b.run(turns=3)
        ta = b.tree(run, b.persona(PA, QA), turns=3)
        tb = b.tree(run, b.persona(PB, QB), turns=3)
        b.conversation(ta, [
            Turn("Hi there!", reply(6, "a1"), reply(3, "a1"), judge=AGREE, finish=ALL_STOP, tokens=(30, 10)),
            Turn(RECITE, reply(6, "a2"), reply(3, "a2"), inferred=("half of A", None), judge=DISAGREE,
                 finish=ALL_STOP, tokens=(30, 10)),
            Turn("Any plans for the weekend?", reply(6, "a3"), reply(3, "a3"), inferred=(PA, QA), finish=ALL_STOP,
                 tokens=(30, 10)),
        ], run_id=run)
        b.conversation(tb, [
            Turn("Hi there!", reply(6, "b1"), reply(3, "b1"), judge=SPLIT,
                 finish={**ALL_STOP, "preferred": "length"}, tokens=(30, 10)),
            Turn("Night shift again.", reply(6, "b2"), reply(3, "b2"), judge=AGREE,
                 finish=ALL_STOP if all_tokens else None, tokens=(30, 10)),
            Turn("How can I help you today?", reply(6, "b3"), reply(3, "b3"), finish=ALL_STOP, tokens=(30, 10)),
        ], run_id=run)
        personas_run = b.run("personas")
        return {"run": run, "personas_run": personas_run, "A": ta, "B": tb}


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "q.db"
    return path, build(path)


def report_of(path: Path, run: int, **kw):
    b = TreeBuilder(path)
    try:
        return build_quality_report(b.conn, run, QualitySettings(), **kw)
    finally:
        b.close()


def test_every_metric_reads_what_the_trees_hold(db) -> None:
    path, ids = db
    r = report_of(path, ids["run"], embedder=LookupEmbedder(TABLE))
    m = {k: v for k, v in r["metrics"].items()}
    assert r["run"] == {"id": ids["run"], "kind": "generate", "status": "running", "trees": 2,
                        "trees_by_status": {"complete": 2}, "checked_trees": 2, "nodes": 6, "sampled": False}
    # revelation per node: A 0, 0.5, 1 ("half of A" is at 60 degrees; turn 3 inferred all of it); B nothing inferred
    turns = r["per_turn"]
    assert [t["revelation"] for t in turns] == [0.0, 0.25, 0.5]
    assert [t["revelation_profile"] for t in turns] == [0.0, 0.25, 0.5]
    assert [t["revelation_personality"] for t in turns] == [0.0, 0.0, 0.5]
    assert m["revelation"]["value"] == 0.25 and m["revelation"]["slope"] == 0.25 and not m["revelation"]["flagged"]
    # leakage: A turn 2 recites 14 words of its profile
    assert (m["leakage"]["count"], m["leakage"]["of"], m["leakage"]["value"]) == (1, 6, round(1 / 6, 4))
    assert m["leakage"]["flagged"] and [t["leakage"] for t in turns] == [0.0, 0.5, 0.0]
    # role flips: B turn 3 offers help
    assert (m["role_flips"]["count"], m["role_flips"]["patterns"]) == (1, {"offers_help": 1})
    # truncation: 1 of the 20 calls with a known finish (B turn 2 has no calls: 4 unknown, not counted)
    t = m["truncation"]
    assert (t["count"], t["of"], t["unknown"], t["value"], t["flagged"]) == (1, 20, 4, 0.05, True)
    assert t["by_role"] == {"preferred": 1} and t["finish_reasons"] == {"length": 1, "stop": 19}
    assert "4 of 24 calls have no finish_reason" in t["note"]
    assert [x["truncation"] for x in turns] == [0.125, 0.0, 0.0]
    assert (m["empty"]["count"], m["duplicates"]["count"]) == (0, 0)
    assert not m["empty"]["flagged"] and not m["duplicates"]["flagged"]
    # length: tokens are missing for B turn 2, so words: 6 vs 3 everywhere
    lb = m["length_bias"]
    assert (lb["value"], lb["unit"], lb["preferred_longer"], lb["flagged"]) == (2.0, "words", 1.0, True)
    assert "measured in words" in lb["note"]
    # diversity: turn 1 the same message in both trees (distance 0), turn 2 orthogonal (1), turn 3 60 degrees (0.5)
    d = m["diversity"]
    assert [x["diversity"] for x in turns] == [0.0, 1.0, 0.5]
    assert (d["value"], d["lowest"], d["lowest_turn"], d["flagged"]) == (0.5, 0.0, 1, True)
    assert [x["distinct_2"] for x in turns] == [0.5, 1.0, 1.0]
    # judge: A1 agree, A2 disagree, B1 split, B2 agree
    j = m["judge_agreement"]
    assert (j["judged"], j["agree"], j["disagree"], j["split"], j["value"], j["flagged"]) == (4, 2, 1, 1, 0.5, True)
    assert [x["judge_agreement"] for x in turns] == [0.5, 0.5, None]
    assert len(r["flags"]) == 6 and r["flags"][0].startswith("leakage 0.167 > 0.05: 1 of 6 user messages")
    assert r["examples"]["leaked"][0]["turn"] == 2 and "14 words recited" in r["examples"]["leaked"][0]["detail"]
    json.dumps(r, allow_nan=False)  # plain JSON


def test_length_in_tokens_when_every_reply_has_them_and_thresholds_move_flags(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    ids = build(path, all_tokens=True)
    b = TreeBuilder(path)
    try:
        r = build_quality_report(b.conn, ids["run"], QualitySettings(max_length_ratio=3.5, max_leak_rate=0.2))
    finally:
        b.close()
    lb = r["metrics"]["length_bias"]
    assert (lb["value"], lb["unit"], lb["flagged"], lb["note"]) == (3.0, "tokens", False, None)
    assert r["metrics"]["leakage"]["flagged"] is False and r["metrics"]["truncation"]["unknown"] == 0


def test_without_an_embedder_revelation_and_diversity_are_not_measured(db) -> None:
    path, ids = db
    r = report_of(path, ids["run"])
    for name in ("revelation", "diversity"):
        assert r["metrics"][name]["value"] is None and r["metrics"][name]["flagged"] is None
        assert "no embedder" in r["metrics"][name]["note"]
    assert r["metrics"]["diversity"]["distinct_2"] == round((0.5 + 1 + 1) / 3, 4)
    assert r["embedder"] is None and all(t["revelation"] is None for t in r["per_turn"])


def test_unknown_or_non_generate_runs_are_config_errors_and_a_sample_says_so(db) -> None:
    path, ids = db
    for bad in ("x", 0, ids["personas_run"], 99):
        with pytest.raises(ConfigError) as err:
            report_of(path, bad)
        assert err.value.key == "run"
    assert f"have [{ids['run']}]" in str(err.value)  # the generate runs there are
    r = report_of(path, ids["run"], max_trees=1)
    assert (r["run"]["checked_trees"], r["run"]["nodes"], r["run"]["sampled"]) == (1, 3, True)
    assert "a sample: the first 1 of the run's 2 trees" in render_markdown(r)


def test_reports_without_judge_or_finish_reasons_say_not_measured(tmp_path: Path) -> None:
    with TreeBuilder(tmp_path / "n.db") as b:
        run = b.run()
        t = b.tree(run, b.persona(PA, QA), turns=1)
        b.node(t, "", Turn("Hi there!"))
        r = build_quality_report(b.conn, run)
    m = r["metrics"]
    assert m["judge_agreement"]["flagged"] is None and "preference check did not run" in m["judge_agreement"]["note"]
    assert m["truncation"]["value"] is None and m["truncation"]["note"].startswith("unknown: no finish_reason")
    assert m["revelation"]["flagged"] is None and r["flags"] == []


def test_files_and_summary(db, tmp_path: Path) -> None:
    path, ids = db
    r = report_of(path, ids["run"], embedder=LookupEmbedder(TABLE))
    paths = write_quality_report(r, tmp_path / "out")
    assert json.loads(paths["json"].read_text()) == r
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert f"# Quality of run #{ids['run']}" in md and "**6 flagged:**" in md
    assert "| leakage | 0.167 (1/6) | <= 0.05 | **FLAGGED** |" in md
    assert "| revelation | 0.250 (slope +0.2500/turn) | slope > 0.01 | ok |" in md
    assert "| 2 | 2 | 0.250 | 0.500 |" in md  # per turn: turn, nodes, revelation, leakage
    lines = summary_lines(r)
    assert lines[0].startswith(f"quality of run {ids['run']}: 6 nodes of 2 trees") and "6 flagged" in lines[0]
    assert "leakage 0.167 FLAGGED" in lines[1] and "revelation 0.250 (slope +0.250/turn)" in lines[1]
    assert len(lines) == 2 + 6 and all(x.startswith("  ! ") for x in lines[2:])


def test_viewer_section_is_cached_until_a_node_is_committed(db) -> None:
    path, ids = db
    b = TreeBuilder(path)
    try:
        view = run_quality_summary(b.conn, ids["run"])
        assert [row["metric"] for row in view["rows"]][:3] == ["revelation", "leakage", "role flips"]
        assert view["rows"][1]["status"] == "flagged" and view["rows"][0]["status"] == "not measured"
        assert run_quality_summary(b.conn, ids["run"]) is view  # cached
        t = b.tree(ids["run"], b.persona(PB, QA), turns=1)
        b.node(t, "", Turn("How may I assist you?"))
        fresh = run_quality_summary(b.conn, ids["run"])
        assert fresh is not view and "2 of 7 user messages" in " ".join(fresh["flags"])
        assert run_quality_summary(b.conn, ids["personas_run"]) is None
    finally:
        b.close()


def test_metric_helpers() -> None:
    assert distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)  # (a b), (b a), (a b) | (a b)
    assert distinct_n(["one"], 2) is None
    v = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    assert mean_pairwise_distance(v) == pytest.approx(1 - (0 + 1 + 0) / 3)
    assert mean_pairwise_distance(v[:1]) is None


def test_quality_summary_in_one_call(db) -> None:
    path, ids = db
    text = quality_summary(path, embedder=LookupEmbedder(TABLE))  # the newest generate run
    assert text.splitlines()[0].startswith(f"quality of run {ids['run']}: 6 nodes of 2 trees")
    assert "  ! leakage 0.167 > 0.05" in text
    with pytest.raises(ConfigError):
        quality_summary(path, ids["personas_run"])
