"""Node flags on hand-built trees in a real SQLite file, where every flag is
known: detectors, the call join (finish_reason), the judge verdicts, the
exclusion rule (a flagged node takes its descendants with it), and the
``quality`` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from aloesim.core.errors import ConfigError
from aloesim.environment.quality import (
    REASONS,
    QualitySettings,
    find_exclusions,
    iter_tree_checks,
    parse_reasons,
)
from tests.support.quality_trees import ALL_STOP, DISAGREE, PROFILES, TreeBuilder, Turn, write_flagged

ROOT = Path(__file__).resolve().parents[3]
@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "q.db"
    return path, write_flagged(path)


def flags_of(path: Path, runs: list[int], **kw) -> dict[tuple[int, str], set[str]]:
    b = TreeBuilder(path)
    try:
        return {(c.node.tree_id, c.node.branch): set(c.flags)
                for t in iter_tree_checks(b.conn, runs, QualitySettings(), **kw) for c in t.checks}
    finally:
        b.close()


def test_every_node_gets_exactly_the_flags_built_into_it(db) -> None:
    path, ids = db
    A, B, C, D = ids["A"], ids["B"], ids["C"], ids["D"]
    assert flags_of(path, [ids["run"]]) == {
        (A, ""): set(), (A, "p"): {"leaked", "truncated", "judge_disagree"}, (A, "pr"): {"role_flip", "duplicate"},
        (B, ""): {"empty"}, (B, "p"): {"duplicate"},
        (C, ""): set(), (C, "p"): {"leaked"}, (C, "r"): set(),
        (D, ""): {"role_flip"},
    }
    # complete trees only, as export reads them by default
    assert (D, "") not in flags_of(path, [ids["run"]], include_incomplete=False)


def test_node_details_say_why(db) -> None:
    path, ids = db
    b = TreeBuilder(path)
    checks = {(c.node.tree_id, c.node.branch): c for t in iter_tree_checks(b.conn, [ids["run"]], QualitySettings())
              for c in t.checks}
    b.close()
    A, B = ids["A"], ids["B"]
    recited = checks[(A, "p")].recited
    assert (recited.words, recited.source) == (14, "profile")  # "i am a retired ... beans"
    assert checks[(A, "p")].truncated_roles == ("preferred",)
    assert dict(checks[(A, "p")].finish) == {**ALL_STOP, "preferred": "length"}
    assert (checks[(A, "p")].preferred_tokens, checks[(A, "p")].rejected_tokens) == (64, 12)
    assert checks[(A, "pr")].role_flip == "offers_help" and checks[(A, "pr")].duplicate == ("pair",)
    assert dict(checks[(A, "pr")].finish)["user"] is None  # recorded as unknown
    assert checks[(B, "")].empty_roles == ("preferred",)
    assert checks[(B, "p")].duplicate == ("user_repeat",)
    assert [checks[k].judge for k in ((A, ""), (A, "p"), (B, "p"), (B, ""))] == ["agree", "disagree", "split", None]
    # C 'p' has no calls at all: every finish is unknown, no token counts
    assert dict(checks[(ids["C"], "p")].finish) == dict.fromkeys(ALL_STOP)


def test_call_join_takes_the_last_successful_call_and_follows_a_swap(tmp_path: Path) -> None:
    with TreeBuilder(tmp_path / "j.db") as b:
        run = b.run()
        t = b.tree(run, b.persona(*PROFILES[0]), turns=2)
        swapped = {**DISAGREE, "swapped": True}
        b.node(t, "", Turn("Hello there.", judge=swapped, finish={**ALL_STOP, "rejected": "length"}))
        # turn 2: the first preferred call stopped at length, a retry finished; a failed call is ignored
        b.node(t, "p", Turn("And you?", preferred="I'm good, thanks for asking.", rejected="Same as you."))
        b.call(t, 2, "p", "preferred", finish_reason="length")
        b.call(t, 2, "p", "preferred", finish_reason="stop")
        b.call(t, 2, "p", "rejected", finish_reason="length", error="timeout")
        b.call(t, 2, "p", "rejected", finish_reason="stop")
        checks = {c.node.branch: c for tc in iter_tree_checks(b.conn, [run], QualitySettings()) for c in tc.checks}
    # the swapped pair's preferred text came from the rejected call, which was cut; the judge was followed
    assert checks[""].truncated_roles == ("preferred",) and checks[""].swapped
    assert "judge_disagree" not in checks[""].flags and "truncated" in checks[""].flags
    assert checks["p"].flags == frozenset()
    assert dict(checks["p"].finish) == {"user": None, "inducer": None, "preferred": "stop", "rejected": "stop"}


def test_a_database_without_finish_reason_reports_every_finish_unknown(tmp_path: Path) -> None:
    with TreeBuilder(tmp_path / "old.db") as b:
        b.conn.execute("ALTER TABLE llm_calls DROP COLUMN finish_reason")  # as before that migration
        b.has_finish = False
        run = b.run()
        t = b.tree(run, b.persona(*PROFILES[0]), turns=1)
        b.node(t, "", Turn("Hi!", finish=ALL_STOP, tokens=(5, 6)))
        [tree] = list(iter_tree_checks(b.conn, [run], QualitySettings()))
    [c] = tree.checks
    assert dict(c.finish) == dict.fromkeys(ALL_STOP) and c.flags == frozenset()
    assert (c.preferred_tokens, c.rejected_tokens) == (5, 6)


def test_exclusion_drops_flagged_nodes_and_their_descendants(db) -> None:
    path, ids = db
    A, B, C = ids["A"], ids["B"], ids["C"]
    b = TreeBuilder(path)
    try:
        ex = find_exclusions(b.conn, [ids["run"]], ["leaked"], QualitySettings(), include_incomplete=False)
        assert ex.dropped == {(A, "p"), (A, "pr"), (C, "p")}  # A 'pr' is built on A 'p'
        assert ex.summary() == {"leaked": 2, "dependents": 1, "total": 3}
        ex = find_exclusions(b.conn, None, ["empty", "truncated", "role_flip"], QualitySettings(),
                             include_incomplete=True)
        # B '' is empty: B 'p' goes with it; A 'p' truncated takes A 'pr' (also a role flip: counted, not a dependent)
        assert ex.dropped == {(A, "p"), (A, "pr"), (B, ""), (B, "p"), (ids["D"], "")}
        assert ex.summary() == {"truncated": 1, "role_flip": 2, "empty": 1, "dependents": 1, "total": 5,
                                "unknown_finish": 5}  # A 'pr' (its user call); C 'p', C 'r', D, E (no calls)
        assert find_exclusions(b.conn, None, [], QualitySettings(), include_incomplete=True).summary() == {
            "dependents": 0, "total": 0}
        with pytest.raises(ValueError, match="unknown exclusion reasons"):
            find_exclusions(b.conn, None, ["boring"], QualitySettings(), include_incomplete=True)
    finally:
        b.close()


def test_settings_defaults_live_in_the_schema_and_bad_values_are_config_errors() -> None:
    from aloesim.orchestration import check_config, compose_config

    assert yaml.safe_load((ROOT / "conf" / "quality" / "default.yaml").read_text()) is None  # comments only
    assert check_config(compose_config("quality", [])).quality == QualitySettings()
    assert check_config(compose_config("export", [])).quality == QualitySettings()
    assert set(QualitySettings().thresholds()) | {"out_dir"} == {f.name for f in dataclasses.fields(QualitySettings)}
    assert QualitySettings.from_config({"leak_min_words": 12}).leak_min_words == 12
    for key, value in [("leak_min_words", 0), ("leak_run_words", 1.5), ("max_leak_rate", 1.5),
                       ("max_leak_rate", "high"), ("max_length_ratio", 0.5), ("min_diversity", -0.1),
                       ("diversity_sample", 1), ("embedder", ""), ("nope", 1), ("max_empty_rate", True)]:
        with pytest.raises(ConfigError) as err:
            QualitySettings.from_config({key: value})
        assert err.value.key == f"quality.{key}"
    assert QualitySettings.from_config({"min_revelation_slope": -0.05}).min_revelation_slope == -0.05


def test_exclusion_reasons_parse_in_a_fixed_order() -> None:
    assert parse_reasons(None) == () and parse_reasons([]) == ()
    assert parse_reasons(["role_flip", "truncated", "role_flip"]) == ("truncated", "role_flip")
    assert parse_reasons("leaked") == ("leaked",)
    assert parse_reasons(list(REASONS)) == REASONS
    with pytest.raises(ConfigError, match="export.exclude='boring'"):
        parse_reasons(["leaked", "boring"])
    with pytest.raises(ConfigError):
        parse_reasons(3)


def test_finish_is_inferred_from_max_tokens_where_none_was_recorded(tmp_path: Path) -> None:
    prompt = "Play this person: {profile} {personality}. Only reveal partial information about your profile each round."
    with TreeBuilder(tmp_path / "inf.db") as b:
        run = b.run(user_prompt=prompt)
        t = b.tree(run, b.persona(*PROFILES[0]), turns=1)
        b.node(t, "", Turn("Okay so I should only reveal partial information about your profile each round?"))
        b.call(t, 1, "", "user", finish_reason=None, completion_tokens=96, max_tokens=96)  # used them all: cut
        b.call(t, 1, "", "preferred", finish_reason=None, completion_tokens=40, max_tokens=128)  # stopped itself
        b.call(t, 1, "", "rejected", finish_reason="stop", completion_tokens=128, max_tokens=128)  # recorded wins
        b.call(t, 1, "", "inducer", finish_reason=None, completion_tokens=None, max_tokens=200)  # unknown
        [tree] = list(iter_tree_checks(b.conn, [run], QualitySettings()))
    [c] = tree.checks
    assert dict(c.finish) == {"user": "length", "inducer": None, "preferred": "stop", "rejected": "stop"}
    assert c.finish_inferred == ("user", "preferred") and c.truncated_roles == ("user",)
    # the message recites 9 words of the run's user prompt: "only reveal partial information ... each round"
    assert "leaked" in c.flags and c.recited.source == "instructions" and c.recited.words == 9
