"""benchmarks/persona_filter.py on a few candidates: same decisions, results written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def test_candidates_are_seeded_and_distinct() -> None:
    import persona_filter

    a = persona_filter.candidates(50, seed=1)
    assert a == persona_filter.candidates(50, seed=1) != persona_filter.candidates(50, seed=2)
    assert len(set(a)) == 50


@pytest.mark.integration
def test_benchmark_agrees_with_the_naive_filter(tmp_path: Path) -> None:
    import persona_filter

    assert persona_filter.main(["--candidates", "8", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "persona_filter.json").read_text())["results"]
    assert result["identical_decisions"] is True and result["candidates"] == 8
    assert result["naive_pairs_encoded"] >= 8 * 20
    assert result["speed_ratio"] > 1
