"""Adaptive concurrency seen from outside (issue 16.1): a generate run against a
loopback server with a hidden requests-per-minute budget (429s beyond it) ends
complete, and where each backend's in-flight limit ended is in the summary
line, ``aloe runs`` (JSON and table) and the viewer's run page; a fixed limit
shows as the number alone."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from latency_server import ServerConfig, serve_in_thread
from test_estimate import _personas  # sibling test module

from aloesim.inspection import limit_text, list_run_rows, runs_plain_table
from aloesim.inspection.viewer import create_app
from aloesim.inspection.viewer import serve_in_thread as serve_viewer
from aloesim.orchestration import compose_config
from aloesim.orchestration.commands import generate


def overrides(db: Path, root: str, *extra: str) -> list[str]:
    return [f"db={db}", "generation.trees=3", "generation.turns=2", "generation.progress=off", "backend=openai",
            f"backend.base_url={root}/v1", "backend.api_key_env=null", "backend.dialect=openai",
            "backend.model=house-model", "backend.concurrency=8", "backend.backoff_base=0.05", "backend.max_retries=30",
            *extra]


@pytest.fixture(scope="module")
def server():
    # 10 calls/s, a bucket of half a second: more than that is refused with a 429 (headers say how much is left)
    with serve_in_thread(ServerConfig(latency=0.05, seed=3, rpm=600, burst=0.5)) as root:
        yield root


def test_the_adaptive_limit_is_in_the_summary_runs_and_viewer(tmp_path: Path, server: str, capsys) -> None:
    db = tmp_path / "a.db"
    _personas(db, 3)
    assert generate.run(compose_config("generate", overrides(db, server))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trees_complete"] == 3
    (limit,) = summary["limits"]  # every role on the one backend
    assert limit["adaptive"] is True and limit["max"] == 8 and 1 <= limit["limit"] <= 8
    endpoint = limit["endpoints"][f"{server}/v1"]
    assert endpoint["steered"] > 0  # the server's x-ratelimit-* headers set it
    assert endpoint["limit"] == limit["limit"] and endpoint["min"] == 1

    (listed,) = list_run_rows(str(db))
    assert listed["stats"]["limits"] == summary["limits"]
    progress = listed["stats"]["this_invocation"]  # what the progress display showed last
    assert progress["limit"] == limit["limit"] and progress["adaptive"] is True
    table = runs_plain_table([listed])
    header, row = table.splitlines()
    assert "limit" in header.split() and f" {limit['limit']}/8 " in row

    with serve_viewer(create_app(db)) as url, urllib.request.urlopen(f"{url}/runs/{listed['id']}") as page:
        html = page.read().decode()
    assert "in-flight limit" in html
    assert f"house-model: {limit['limit']} of 8 (adaptive; {limit['cuts']} cuts, {limit['refusals']} refused)" in html


def test_a_fixed_limit_shows_as_the_number(tmp_path: Path, server: str, capsys) -> None:
    db = tmp_path / "f.db"
    _personas(db, 3)
    assert generate.run(compose_config("generate", overrides(db, server, "backend.adaptive=false",
                                                             "backend.concurrency=2"))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["limits"] == [{"model": "house-model", "adaptive": False, "limit": 2, "max": 2}]
    (listed,) = list_run_rows(str(db))
    assert limit_text(listed["stats"]) == "2"
