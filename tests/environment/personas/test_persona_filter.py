"""The acceptance rule against hand-computed similarities, and calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aloesim.environment.personas import (
    calibrate_threshold,
    filter_candidates,
    greedy_keep_count,
    normalise,
    similarity_stats,
)


def unit(deg: float) -> list[float]:
    """A 2-d unit vector at ``deg`` degrees: cos(a - b) is the similarity of two of them."""
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


def test_rule_against_pool_by_hand() -> None:
    pool = np.array([unit(0)], dtype=np.float32)
    at = math.degrees(math.acos(0.6))  # 53.13 deg: similarity to the pool exactly 0.6
    # to the pool: cos 40 = .766 (reject); .6 (keep: <= threshold); cos 120 = -.5 and
    # cos(120 - 53.13) = .393 to the kept one (keep); cos 140 = -.766 but cos 20 = .940
    # to the candidate kept at 120 (reject, 'batch')
    cands = np.array([unit(40), unit(at), unit(120), unit(140)], dtype=np.float32)
    res = filter_candidates(cands, pool, 0.6 + 1e-6)
    assert res.keep == (False, True, True, False)
    assert res.reason == ("pool", "", "", "batch")
    expected = [math.cos(math.radians(d)) for d in (40, at, 120 - at, 20)]
    assert res.max_similarity == pytest.approx(expected, abs=1e-6)
    assert filter_candidates(cands, pool, 0.6 - 1e-4).keep[1] is False


def test_batch_items_kept_earlier_block_later_ones_only_if_kept() -> None:
    # b is rejected by the pool; c is close to b (cos 20) but b was not kept, so c passes
    pool = np.array([unit(0)], dtype=np.float32)
    cands = np.array([unit(30), unit(100), unit(120)], dtype=np.float32)
    # sims: a=30deg -> pool .866 reject; 100 -> pool -.17 keep; 120 -> pool -.5, batch cos20=.94 reject
    res = filter_candidates(cands, pool, 0.6)
    assert res.keep == (False, True, False)
    assert res.reason == ("pool", "", "batch")
    cands2 = np.array([unit(30), unit(50), unit(120)], dtype=np.float32)  # 30 rejected; 50 rejected (cos50=.64)
    res2 = filter_candidates(cands2, pool, 0.6)
    assert res2.keep == (False, False, True)


def test_reference_set_rejects_near_eval_items() -> None:
    pool = np.array([unit(0)], dtype=np.float32)
    ref = np.array([unit(180)], dtype=np.float32)
    cands = np.array([unit(170), unit(90)], dtype=np.float32)
    res = filter_candidates(cands, pool, 0.6, reference=ref)
    assert res.keep == (False, True)
    assert res.reason[0] == "reference"
    assert filter_candidates(cands, pool, 0.6).keep == (True, True)


def test_empty_pool_and_empty_batch() -> None:
    cands = np.array([unit(0), unit(10), unit(90)], dtype=np.float32)
    assert filter_candidates(cands, None, 0.6).keep == (True, False, True)
    assert filter_candidates(np.zeros((0, 2), np.float32), cands, 0.6).keep == ()


def test_order_decides_and_is_deterministic() -> None:
    a, b = unit(0), unit(30)  # cos 30 = .866: whichever comes first wins
    assert filter_candidates(np.array([a, b], np.float32), None, 0.6).kept == [0]
    res1 = filter_candidates(np.array([b, a], np.float32), None, 0.6)
    assert res1.kept == [0]
    rng = np.random.default_rng(0)
    cands, pool = normalise(rng.standard_normal((200, 8))), normalise(rng.standard_normal((50, 8)))
    first = filter_candidates(cands, pool, 0.5)
    assert first == filter_candidates(cands.copy(), pool.copy(), 0.5)


def test_matches_a_naive_pairwise_reference() -> None:
    rng = np.random.default_rng(1)
    cands, pool = normalise(rng.standard_normal((120, 6))), normalise(rng.standard_normal((30, 6)))
    kept_vecs = list(pool)
    expect = []
    for c in cands:
        ok = all(float(np.dot(c, k)) <= 0.7 for k in kept_vecs)
        expect.append(ok)
        if ok:
            kept_vecs.append(c)
    assert filter_candidates(cands, pool, 0.7).keep == tuple(expect)


def test_greedy_keep_count_and_calibration() -> None:
    vecs = np.array([unit(0), unit(30), unit(60), unit(95)], dtype=np.float32)
    # 0.4: keep 0; 30 (.866) and 60 (.5) blocked; 95 (-.087) kept -> 2
    # 0.6: keep 0; 30 blocked; 60 (.5) kept; 95 blocked by 60 (cos 35 = .819) -> 2
    counts = greedy_keep_count(vecs, [0.0, 0.4, 0.6, 0.9])
    assert counts == {0.0: 2, 0.4: 2, 0.6: 2, 0.9: 4}
    assert calibrate_threshold(vecs, 1.0) == 0.87   # every neighbour pair is <= cos 30 = .866
    assert calibrate_threshold(vecs, 0.5) == 0.0
    assert calibrate_threshold(vecs, 0.75) == 0.82  # 0, 60 and 95 need cos 35 = .819
    with pytest.raises(ValueError):
        calibrate_threshold(np.zeros((0, 2), np.float32), 0.5)


def test_similarity_stats_by_hand() -> None:
    vecs = np.array([unit(0), unit(30), unit(60), unit(95)], dtype=np.float32)
    st = similarity_stats(vecs, thresholds=(0.6, 0.9), keep_rates=(1.0,))
    assert st["n"] == 4
    assert st["nearest_neighbour"]["p50"] == pytest.approx(0.866, abs=1e-3)
    assert st["nearest_neighbour"]["p0"] == pytest.approx(math.cos(math.radians(35)), abs=1e-4)
    assert st["pairwise"]["p0"] == pytest.approx(math.cos(math.radians(95)), abs=1e-4)
    assert st["kept_at_threshold"] == {"0.6": 2, "0.9": 4}
    assert st["threshold_for_keep_rate"] == {"1": 0.87}
    hist = {h["from"]: h["count"] for h in st["nearest_neighbour_histogram"]}
    assert hist[0.8] == 4 and sum(hist.values()) == 4
    assert similarity_stats(vecs[:1])["n"] == 1


def test_describe_filter_states_which_filter_ran() -> None:
    from aloesim.environment.personas import describe_filter

    assert describe_filter(False, 0.6)["mode"] == "unfiltered"
    fixed = describe_filter(True, 0.6)
    assert fixed["mode"] == "threshold" and fixed["threshold"] == 0.6 and "<= 0.6" in fixed["said"]
    calibrated = describe_filter(True, 0.6, 0.9, {"profile": 0.71, "personality": None})
    assert calibrated["mode"] == "calibrated" and calibrated["thresholds"]["profile"] == 0.71
    assert "90%" in calibrated["said"] and "profile 0.7100" in calibrated["said"]
