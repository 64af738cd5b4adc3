"""The ALOE metrics against hand-computed values and the paper's Table 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aloesim.core.errors import InputError
from aloesim.evaluation import metrics
from aloesim.evaluation.metrics import (
    alignment_levels,
    bootstrap,
    cohen_kappa,
    read_labels,
    reasons,
    summarize,
)

# Table 1 of the paper: AL(1..10) -> (average, IR, N-IR, R², N-R²), as printed (rounded)
TABLE1 = {
    "Qwen2 Base": ([2.87, 2.94, 2.88, 3.10, 3.65, 4.13, 4.50, 4.65, 4.63, 4.70], (3.81, 0.254, 0.138, 0.917, 0.918)),
    "Qwen2 Ours": ([4.05, 4.26, 4.66, 4.86, 4.93, 4.95, 4.95, 4.98, 4.98, 4.98], (4.76, 0.093, 0.099, 0.695, 0.693)),
    "Llama3 Base": ([3.38, 3.35, 3.40, 3.48, 3.45, 3.48, 3.41, 3.45, 3.35, 3.46], (3.42, 0.005, 0.037, 0.084, 0.086)),
    "Mistral Ours": ([3.85, 3.85, 3.98, 3.91, 4.26, 4.17, 4.35, 4.52, 4.57, 4.60], (4.21, 0.095, 0.127, 0.932, 0.933)),
    "OLMo Base": ([2.55, 2.69, 2.99, 3.26, 3.17, 3.07, 2.82, 2.80, 2.74, 2.82], (2.89, 0.002, 0.003, 0.001, 0.001)),
}


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_reproduces_paper_table1(name: str) -> None:
    al, (average, ir, n_ir, r2, n_r2) = TABLE1[name]
    s = summarize(al)
    assert set(s) == {"average", "ir", "r2", "n_ir", "n_r2"}
    # the paper computed from unrounded AL(k); the table's AL(k) are rounded to 2 places
    assert s["average"] == pytest.approx(average, abs=0.006)
    assert s["ir"] == pytest.approx(ir, abs=0.001)
    assert s["n_ir"] == pytest.approx(n_ir, abs=0.001)
    assert s["r2"] == pytest.approx(r2, abs=0.002)
    assert s["n_r2"] == pytest.approx(n_r2, abs=0.005)


def test_qwen_base_exact_values() -> None:
    s = summarize(TABLE1["Qwen2 Base"][0])
    assert round(s["average"], 2) == 3.81 or round(s["average"], 3) == 3.805
    assert round(s["ir"], 3) == 0.254 or abs(s["ir"] - 0.2535) < 1e-4
    assert s["n_ir"] == pytest.approx(s["ir"] / (4.70 - 2.87))   # normalised over all K turns
    assert s["n_r2"] == pytest.approx(s["r2"])                   # R² is invariant to min-max scaling


def test_hand_computed_line() -> None:
    assert summarize([1, 2, 3]) == pytest.approx({"average": 2.0, "ir": 1.0, "r2": 1.0, "n_ir": 0.5, "n_r2": 1.0})


def test_hand_computed_bent_curve() -> None:
    # y = 2, 4, 3: slope 0.5, intercept 2, fitted 2.5 3 3.5, SS_res 1.5, SS_tot 2
    s = summarize([2, 4, 3])
    assert s == pytest.approx({"average": 3.0, "ir": 0.5, "r2": 0.25, "n_ir": 0.25, "n_r2": 0.25})


def test_decreasing_curve_has_negative_ir() -> None:
    s = summarize([5, 4, 3, 2])
    assert s["ir"] == pytest.approx(-1.0) and s["n_ir"] == pytest.approx(-1 / 3) and s["r2"] == pytest.approx(1.0)


def test_one_turn() -> None:
    s = summarize([3.5])
    assert s == {"average": 3.5, "ir": None, "r2": None, "n_ir": None, "n_r2": None}
    assert "fewer than two turns" in reasons([3.5])["ir"]


def test_flat_curve() -> None:
    s = summarize([3.0, 3.0, 3.0, 3.0])
    assert s["average"] == 3.0 and s["ir"] == pytest.approx(0.0)
    assert s["r2"] is None and s["n_ir"] is None and s["n_r2"] is None
    why = reasons([3.0, 3.0, 3.0, 3.0])
    assert "flat" in why["n_ir"] and "flat" in why["r2"] and "ir" not in why


def test_missing_turn_in_curve_is_skipped_not_zero() -> None:
    s = summarize([1.0, None, 3.0, float("nan")])
    assert s["average"] == 2.0 and s["ir"] == pytest.approx(1.0) and s["r2"] == pytest.approx(1.0)
    assert "2, 4" in reasons([1.0, None, 3.0, float("nan")])["turns"]
    assert summarize([None, None]) == dict.fromkeys(metrics.SUMMARY_KEYS)


def test_alignment_levels_over_scored_cases_only() -> None:
    nan = np.nan
    scores = [[5, nan, 1], [3, 4, nan], [1, 2, nan]]
    al, n = alignment_levels(scores)
    assert al[0] == pytest.approx(3.0) and al[1] == pytest.approx(3.0) and al[2] == pytest.approx(1.0)
    assert n.tolist() == [3, 2, 1]
    al, n = alignment_levels([[nan, 2.0]])
    assert math.isnan(al[0]) and n.tolist() == [0, 1]


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(1, 6, size=(40, 5)).astype(float)
    scores[3, 2] = np.nan
    a = bootstrap(scores, n=500, seed=7)
    b = bootstrap(scores, n=500, seed=7)
    c = bootstrap(scores, n=500, seed=8)
    assert a == b and a != c
    al, _ = alignment_levels(scores)
    for k, (lo, hi) in enumerate(a["al"]):
        assert lo <= al[k] <= hi and hi - lo > 0.2
    s = summarize(al)
    assert a["average"][0] <= s["average"] <= a["average"][1]
    assert a["ir"][0] <= s["ir"] <= a["ir"][1]


def test_bootstrap_ir_matches_fit_line_per_resample() -> None:
    # with identical cases every resample equals the data: degenerate intervals at the point values
    scores = np.array([[1.0, 2.0, 4.0]] * 5)
    a = bootstrap(scores, n=50, seed=0)
    assert a["al"] == [[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]]
    assert a["ir"] == pytest.approx([1.5, 1.5]) and a["average"] == pytest.approx([7 / 3, 7 / 3])


def test_kappa_hand_computed_and_against_sklearn() -> None:
    assert cohen_kappa([1, 1, 2, 2], [1, 2, 2, 2]) == pytest.approx(0.5)
    assert cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert cohen_kappa([1, 2, None], [1, 2, 5]) == pytest.approx(1.0)     # missing pairs left out
    assert cohen_kappa([None], [3]) is None
    assert cohen_kappa([3, 3], [3, 3]) is None                            # chance agreement is total
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    a = rng.integers(1, 6, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(1, 6, 200))
    assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(sk.cohen_kappa_score(a, b))
    assert cohen_kappa(a.tolist(), b.tolist(), weights="quadratic") == pytest.approx(
        sk.cohen_kappa_score(a, b, weights="quadratic"))


def test_read_labels(tmp_path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text("case,turn,score\n0,1,4\n1,2,5\n")
    assert read_labels(good) == {(0, 1): 4, (1, 2): 5}
    bad = tmp_path / "bad.csv"
    bad.write_text("case,turn,score\n0,1,4\n0,2,7\n")
    with pytest.raises(InputError) as err:
        read_labels(bad)
    assert err.value.line == 3 and "bad.csv:3" in str(err.value)
    with pytest.raises(InputError):
        read_labels(tmp_path / "missing.csv")
    header = tmp_path / "header.csv"
    header.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="header"):
        read_labels(header)
