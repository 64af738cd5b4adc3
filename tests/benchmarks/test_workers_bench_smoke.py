"""A tiny run of ``benchmarks/workers.py`` (calls/s with 1 and 2 worker
processes) so the script cannot rot: end to end against the real latency
server, results JSON with the fields the docs quote. Not timed: nothing here
asserts a speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
import _common
import workers


@pytest.mark.integration
def test_workers_benchmark_runs_one_and_two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    assert workers.main(["--workers", "1,2", "--trees", "8", "--turns", "1", "--rounds", "1",
                         "--latency", "0.01"]) == 0
    payload = json.loads((tmp_path / "workers.json").read_text())
    r = payload["results"]
    assert r["cores"] >= 1 and len(r["load_average_at_start"]) == 3
    assert [p["workers"] for p in r["points"]] == [1, 2]
    for p in r["points"]:
        assert p["trees_complete"] == 8 and p["llm_calls"] == 8 * 4
        assert p["server_requests"] == 8 * 4  # every call reached the server once
        assert p["calls_per_s_growing"] > 0 and p["client_cpu_ms_per_call"] > 0
    assert set(r["summary"]) == {"1", "2"} and r["summary"]["1"]["speedup_growing"] == 1.0
