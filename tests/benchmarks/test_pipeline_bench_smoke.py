"""Tiny runs of the pipeline benchmarks (orchestration overhead, sequential
baseline, scaling curve, backend saturation) so the scripts cannot rot: each
runs end to end against the real latency server (or, marked integration, the
real embedded llama.cpp server) and writes its results JSON with the fields
the performance docs quote. Not timed: nothing here asserts a speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
import _common
import backend_saturation
import pipeline_overhead
import scaling
import sequential_baseline


@pytest.fixture
def results_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Results go to a temporary folder, never over the committed ones."""
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    return tmp_path


def read(results_dir: Path, name: str) -> dict:
    payload = json.loads((results_dir / f"{name}.json").read_text())
    assert payload["benchmark"] == name
    assert len(payload["machine"]["load_average_1_5_15"]) == 3
    return payload["results"]


def test_pipeline_overhead_both_regimes(results_dir: Path) -> None:
    assert pipeline_overhead.main([
        "--latency-trees", "5", "--latency-turns", "2", "--slow", "0.2",
        "--trees", "5", "--turns", "2", "--fast", "0.01", "--concurrency", "8", "--bare-calls", "40",
    ]) == 0
    r = read(results_dir, "pipeline_overhead")
    lat = r["latency_bound"]
    assert (lat["trees_complete"], lat["nodes"], lat["llm_calls"]) == (5, 10, 40)  # 4 calls per node
    assert lat["calls_by_role"] == {"user": 10, "inducer": 10, "preferred": 10, "rejected": 10}
    assert lat["ideal_s"] == pytest.approx(2 * 3 * 0.2)
    assert lat["wall_over_ideal"] >= 1.0  # 3 sequential hops per turn: nothing can beat the ideal
    assert lat["events"] > 0  # recording on
    thr = r["throughput_bound"]
    assert len(thr["bare_runs"]) == 2 and len(thr["pipeline_runs"]) == 1
    assert thr["pipeline_runs"][0]["llm_calls"] == 40 and thr["bare_runs"][0]["ok"] == 40
    for key in ("ratio_pipeline_over_bare", "bare_cpu_ms_per_call", "pipeline_cpu_ms_per_call"):
        assert thr[key] > 0, key


def test_sequential_baseline_makes_the_same_calls_one_at_a_time(results_dir: Path) -> None:
    assert sequential_baseline.main(["--trees", "4", "--turns", "2", "--latency", "0.05", "--subset", "1"]) == 0
    r = read(results_dir, "sequential_baseline")
    seq, pipe = r["sequential"], r["pipeline"]
    assert seq["llm_calls"] == seq["recorded_calls"] == 2 * 6  # user, inducer, preferred, rejected, judge x2
    assert seq["wall_s"] >= 12 * 0.05  # one call at a time
    assert pipe["llm_calls"] == 4 * 2 * 6 and pipe["calls_by_role"]["preference_judge"] == 16
    assert r["speedup"] == pytest.approx(seq["s_per_conversation"] * 4 / pipe["wall_s"], rel=0.01)


def test_scaling_curve_and_memory_run(results_dir: Path) -> None:
    assert scaling.main(["--levels", "1,8", "--turns", "1", "--trees-min", "4", "--latency", "0.01",
                         "--memory-trees", "30", "--memory-latency", "1"]) == 0
    r = read(results_dir, "scaling")
    assert [p["concurrency"] for p in r["curve"]] == [1, 8]
    assert [p["trees"] for p in r["curve"]] == [4, 8]
    for point in r["curve"]:
        assert point["trees_complete"] == point["trees"]
        assert point["pipeline_calls_per_s"] > 0 and point["bare_calls_per_s"] > 0
    mem = r["memory"]
    assert mem["trees_complete"] == 30
    assert mem["server_peak_in_flight"] == 30  # every tree's first call was out at once
    assert 0 < mem["rss_start_mb"] <= mem["rss_peak_sampled_mb"] <= mem["rss_peak_process_mb"] + 1


@pytest.mark.integration
def test_backend_saturation_on_the_embedded_server(results_dir: Path) -> None:
    assert backend_saturation.main(["--servers", "1", "--trees", "1", "--turns", "1", "--max-tokens", "16",
                                    "--story-requests", "1", "--story-tokens", "16"]) == 0
    r = read(results_dir, "backend_saturation")
    (setup,) = r["setups"]
    assert setup["pipeline"]["trees_complete"] == 1 and setup["pipeline"]["llm_calls"] >= 4
    assert setup["replay"]["requests"] == setup["pipeline"]["llm_calls"] - setup["pipeline"]["call_failures"]
    assert setup["replay"]["errors"] == 0
    for key in ("story", "pipeline", "replay"):
        assert setup[key]["output_tokens_per_s"] > 0, key
    assert setup["pipeline_over_replay"] > 0
