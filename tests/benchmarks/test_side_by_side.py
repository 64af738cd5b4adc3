"""benchmarks/side_by_side.py: the medians per checkout and the B/A ratios are
read from each checkout's results files (two fake checkouts, known figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import side_by_side


def _pipeline(lat: float, cps: float, cpu: float) -> dict:
    return {"load_average_at_start": [1.0, 1.0, 1.0],
            "latency_bound": {"wall_over_ideal": lat},
            "throughput_bound": {"pipeline_calls_per_s": cps, "pipeline_cpu_ms_per_call": cpu,
                                 "ratio_pipeline_over_bare": 1.0, "cpu_per_call_ratio_pipeline_over_bare": 0.9}}


def _write(checkout: Path, name: str, results: dict) -> None:
    folder = checkout / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"benchmark": name, "results": results}))


def test_medians_and_ratios_come_from_each_checkouts_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for i, (lat, cps, cpu) in enumerate([(1.1, 100.0, 4.0), (1.3, 80.0, 5.0), (1.2, 90.0, 3.0)], 1):
        _write(a, f"sbs_pipeline_A{i}", _pipeline(lat, cps, cpu))
    for i, (lat, cps, cpu) in enumerate([(1.2, 99.0, 4.4), (1.5, 70.0, 4.0)], 1):
        _write(b, f"sbs_pipeline_B{i}", _pipeline(lat, cps, cpu))
    _write(b, "sbs_pipeline_A9", _pipeline(9.0, 1.0, 99.0))  # another checkout's side: not read as B
    summary = side_by_side.summarize(a, b, ["pipeline"])
    fig = summary["figures"]
    assert fig["latency_wall_over_ideal"]["median_A"] == pytest.approx(1.2)
    assert fig["latency_wall_over_ideal"]["median_B"] == pytest.approx(1.35)
    assert fig["latency_wall_over_ideal"]["ratio_B_over_A"] == pytest.approx(1.125)
    assert fig["throughput_pipeline_calls_per_s"]["ratio_B_over_A"] == pytest.approx(round(84.5 / 90.0, 3))
    assert fig["throughput_pipeline_cpu_ms_per_call"]["B"] == [4.4, 4.0]
