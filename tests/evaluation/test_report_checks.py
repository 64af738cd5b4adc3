"""The trust parts of a report on hand-built evaluations whose right values
are known: AL(k) with unscored replies left out and counted as failures,
the expected-score view, the judge check verdict and its marks."""

from __future__ import annotations

import pytest

from aloesim.environment.store import ProbeRow
from aloesim.evaluation import build_report, render_markdown


def data(scores, *, probes=(), distributions=None, ident=1, label="Base", stored=None) -> dict:
    turns = len(scores[0])
    return {"id": ident, "run_id": None, "label": label, "status": "complete", "model": {"name": "m"},
            "user_model": {}, "judge_model": {}, "turns": turns, "created_at": 0.0,
            "case_indices": list(range(len(scores))), "scores": scores,
            "stored": stored or [[True] * turns for _ in scores],
            "judge_failures": [{"case": i, "turn": t + 1, "error": "schema"} for i, row in enumerate(scores)
                               for t, s in enumerate(row) if s is None],
            "case_failures": [], "unfinished": [], "tokens": {}, "probes": list(probes),
            "distributions": distributions or {}}


def probes(right: int, wrong: int, ties: int = 0) -> list[ProbeRow]:
    out = [(2.0, 1.0, 1.0)] * right + [(1.0, 2.0, 0.0)] * wrong + [(3.0, 3.0, 0.5)] * ties
    return [ProbeRow("persona_swap" if i % 2 == 0 else "reply_swap", i // 2, 0, 1, a, b, o, None, {})
            for i, (a, b, o) in enumerate(out)]


def test_unscored_replies_both_ways() -> None:
    # case 1's turn 2 and case 2's turn 2 were not scored (judge failed); case 2 turn 3 never happened
    scores = [[3, 4, 5], [3, None, 5], [2, None, None]]
    stored = [[True] * 3, [True] * 3, [True, True, False]]
    e = build_report([data(scores, stored=stored)], n_boot=100)["evaluations"][0]
    assert [t["al"] for t in e["al"]] == pytest.approx([8 / 3, 4.0, 5.0], abs=1e-4)   # left out: turn 2 is 4/1
    u = e["unscored"]
    assert u["count"] == 2 and u["per_turn"] == [0, 2, 0] and u["failure_score"] == 1
    assert u["al_as_failures"] == pytest.approx([8 / 3, 2.0, 5.0], abs=1e-4)   # counted: (4 + 1 + 1) / 3
    assert u["summary_as_failures"]["average"] == pytest.approx((8 / 3 + 2 + 5) / 3, abs=1e-4)
    md = render_markdown(build_report([data(scores, stored=stored)], n_boot=100))
    assert "## Unscored replies counted as failures (score 1)" in md and "| Base | 2 | 2.67 | 2.00 | 5.00 |" in md


def test_expected_scores_view_and_choice() -> None:
    scores = [[2, 4], [3, 5]]
    dists = {(0, 1): (2.5, [0.1, 0.4, 0.3, 0.1, 0.1], 0.9), (1, 1): (3.5, [0.0, 0.1, 0.4, 0.4, 0.1], 0.95),
             (0, 2): (4.0, [0, 0, 0.2, 0.6, 0.2], 0.99)}                           # (1, 2): no distribution
    sample = build_report([data(scores, distributions=dists)], n_boot=100)
    e = sample["evaluations"][0]
    assert [t["al"] for t in e["al"]] == [2.5, 4.5] and e["scoring"] == "sample"
    assert e["by_scoring"]["expected"]["al"] == [3.0, 4.0] and e["by_scoring"]["expected"]["n"] == [2, 1]
    assert e["by_scoring"]["expected"]["turns_with_distribution"] == 3
    assert e["by_scoring"]["expected"]["mean_mass"] == pytest.approx((0.9 + 0.95 + 0.99) / 3, abs=1e-4)
    assert e["unscored"]["count"] == 0
    expected = build_report([data(scores, distributions=dists)], n_boot=100, scoring="expected")
    e = expected["evaluations"][0]
    assert [t["al"] for t in e["al"]] == [3.0, 4.0] and e["unscored"]["count"] == 1   # no distribution = unscored
    md = render_markdown(expected)
    assert "| m | Base (sampled score) | 2.50 | 4.50 |" in md


def test_no_distributions_no_expected_view() -> None:
    e = build_report([data([[2, 4]])], n_boot=100)["evaluations"][0]
    assert "by_scoring" not in e and "(expected score)" not in render_markdown(build_report([data([[2, 4]])]))


def test_judge_check_verdict_and_marks() -> None:
    good = data([[2, 4], [3, 5]], probes=probes(30, 1, 1), ident=1, label="Good")
    blind = data([[3, 3], [3, 3]], probes=probes(8, 8, 16), ident=2, label="Blind")
    unchecked = data([[3, 3]], ident=3, label="Old")
    one = build_report([good], n_boot=100)
    assert one["judge_check"]["reliable"] is True and one["judge_check"]["pairs"] == 32
    assert one["judge_check"]["accuracy"] == pytest.approx(30.5 / 32, abs=1e-4)
    assert "⚠" not in render_markdown(one)
    both = build_report([good, blind, unchecked], n_boot=100)
    top = both["judge_check"]
    assert top["reliable"] is False and "Blind" in top["reason"] and top["pairs"] == 64
    assert [e["reliable"] for e in top["evaluations"]] == [True, False, None]
    md = render_markdown(both)
    rows = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| m | ")}
    assert "⚠" not in rows["Good"] and rows["Blind"].count("⚠") == 2 + 5 and "⚠" not in rows["Old"]
    assert "**NOT CHECKED**" in md and "**UNRELIABLE**" in md and "**reliable**" in md
    blind_entry = both["evaluations"][1]["judge_check"]
    assert blind_entry["accuracy"] == 0.5 and blind_entry["ties"] == 16 and blind_entry["reliable"] is False


@pytest.mark.parametrize(("right", "wrong", "reliable"), [(24, 8, True), (23, 9, False), (4, 0, True), (3, 0, False)])
def test_the_rule_needs_the_threshold_and_a_lower_bound_above_a_half(right, wrong, reliable) -> None:
    # 24/32 = 0.75 (lower bound 0.578): reliable; 23/32 = 0.72: not; 4/4: bound 0.51; 3/3: bound 0.44
    check = build_report([data([[3]], probes=probes(right, wrong))], n_boot=100)["judge_check"]
    assert check["reliable"] is reliable
