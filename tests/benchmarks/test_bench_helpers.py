"""The shared benchmark helpers and the bare-loop baseline, against the real
latency server process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
from _common import Meter, latency_server, machine_info, peak_rss_mb, write_results
from bare_loop import bare_loop, server_capacity


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_server_process_starts_and_stops() -> None:
    with latency_server(0.0) as server:
        assert server.stats()["requests"] == 0
        assert server.cpu_s() > 0
        process = server.process
    assert process.poll() is not None  # terminated at exit


def test_server_cli_rejects_bad_flags() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "latency_server.py"), "--fault-mix", "teapot"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("latency_server: fault kind 'teapot' unknown")


@pytest.mark.anyio
async def test_bare_loop_measures_calls_and_cpu() -> None:
    with latency_server(0.05) as server:
        result = await bare_loop(server.base_url, calls=200, concurrency=16)
        stats = server.stats()
    assert result["ok"] == 200 and result["errors"] == {}
    assert stats["replies"] == 200 + 16  # timed calls + one warm-up round
    assert stats["peak_in_flight"] == 16
    # 200 calls at 16 in flight and 50 ms each cannot beat 13 rounds x 50 ms
    assert result["wall_s"] >= 200 / 16 * 0.05 * 0.95
    assert result["calls_per_s"] == pytest.approx(200 / result["wall_s"], rel=0.01)
    assert 0 < result["cpu_ms_per_call"] < 50
    assert 0.05 <= result["latency_p50_s"] <= result["latency_p99_s"]


@pytest.mark.anyio
async def test_bare_loop_spreads_calls_over_clients() -> None:
    with latency_server(0.05) as server:
        result = await bare_loop(server.base_url, calls=120, concurrency=12, clients=3, warmup=False)
        stats = server.stats()
    assert result["ok"] == 120 and result["clients"] == 3
    assert stats["replies"] == 120 and stats["peak_in_flight"] == 12


@pytest.mark.anyio
async def test_bare_loop_over_aiohttp() -> None:
    pytest.importorskip("aiohttp")
    with latency_server(0.01) as server:
        result = await bare_loop(server.base_url, calls=60, concurrency=6, http="aiohttp")
    assert result["ok"] == 60 and result["http"] == "aiohttp"
    with pytest.raises(ValueError, match="allowed: httpx2, aiohttp"):
        await bare_loop(server.base_url, calls=1, concurrency=1, http="requests")


@pytest.mark.anyio
async def test_bare_loop_counts_errors() -> None:
    with latency_server(0.0, fault_rate=1.0, fault_mix="503") as server:
        result = await bare_loop(server.base_url, calls=20, concurrency=4, warmup=False)
    assert result["ok"] == 0 and result["errors"] == {"InternalServerError": 20}


@pytest.mark.anyio
async def test_server_capacity_is_well_over_a_thousand_per_second() -> None:
    with latency_server(0.0) as server:
        result = await server_capacity(server.url, requests=3000, connections=16)
        assert server.stats()["replies"] == 3000
    assert result["requests"] == 3000
    assert result["server_max_requests_per_s_one_core"] > 1000


def test_meter_and_results_file(tmp_path: Path) -> None:
    with Meter() as meter:
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        time.sleep(0.05)
    assert meter.cpu_s >= 0.05 and meter.wall_s >= 0.1
    assert peak_rss_mb() > 10
    path = write_results("demo", {"calls_per_s": 1.5}, directory=tmp_path)
    data = json.loads(path.read_text())
    assert path.name == "demo.json" and data["benchmark"] == "demo"
    assert data["results"] == {"calls_per_s": 1.5}
    assert data["machine"]["cpus"] >= 1 and data["machine"]["packages"]["openai"].startswith("3.")
    assert data["timestamp"].endswith("+00:00")
    assert set(machine_info()) >= {"platform", "python", "cpu", "memory_gb", "git_commit"}
