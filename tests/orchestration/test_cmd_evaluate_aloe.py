"""``aloe evaluate benchmark=aloe benchmark.profiles=F benchmark.personalities=G``
runs exactly the paper's 100 cases and says so in its report (issue 14.1).
The model calls go to the deterministic loopback latency server
(benchmarks/latency_server.py): the point is which cases run, not what a
model says."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from latency_server import ServerConfig, serve_in_thread

from aloesim.core.errors import ConfigError
from aloesim.orchestration import check_config, compose_config
from aloesim.orchestration.commands import evaluate
from tests.support.aloe_files import personality, profile, write_published


def _cfg(tmp_path: Path, files: tuple[Path, Path], *more: str):
    p, q = files
    return compose_config("evaluate", [f"db={tmp_path / 'e.db'}", f"benchmark.profiles={p}",
                                       f"benchmark.personalities={q}", f"evaluation.out_dir={tmp_path / 'out'}", *more])


def test_the_preset_needs_the_published_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="benchmark.profiles.*published files") as err:
        check_config(compose_config("evaluate", ["benchmark=aloe", f"db={tmp_path / 'e.db'}"]))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("profiles", "personalities", "got"), [
    (21, 7, "21 profiles x 5 (the first 5) personalities = 105 cases"),
    (20, 4, "20 profiles x 4 (the first 5) personalities = 80 cases"),
])
def test_files_that_do_not_give_the_100_cases_are_refused(tmp_path, profiles, personalities, got) -> None:
    files = write_published(tmp_path / "data", profiles=profiles, personalities=personalities, doubled_line=None)
    with pytest.raises(ConfigError, match="benchmark.profiles") as err:
        evaluate.run(_cfg(tmp_path, files, "benchmark=aloe"))
    assert got in str(err.value) and "100" in str(err.value)
    assert not (tmp_path / "e.db").exists() and not (tmp_path / "out").exists()


def test_without_the_preset_the_same_files_give_every_pair(tmp_path) -> None:
    files = write_published(tmp_path / "data")
    chosen = evaluate.select_cases(_cfg(tmp_path, files))
    assert len(chosen.cases) == 140 and chosen.info["personalities"]["used"] == 7
    aloe = evaluate.select_cases(_cfg(tmp_path, files, "benchmark=aloe"))
    assert len(aloe.cases) == 100 and aloe.info["name"] == "ALOE"


def test_benchmark_aloe_runs_exactly_the_paper_cases(tmp_path, capsys) -> None:
    files = write_published(tmp_path / "data")  # line 6 holds two profiles, as in the published training file
    with serve_in_thread(ServerConfig(latency=0.0, seed=3)) as root:
        url = root + "/v1"
        cfg = _cfg(tmp_path, files, "benchmark=aloe", "benchmark.turns=1", "evaluation.bootstrap=100",
                   "evaluation.concurrency=32", "backend=openai", f"backend.base_url={url}",
                   "backend.api_key_env=null", "backend.dialect=openai", "model=openai", f"model.base_url={url}",
                   "model.name=latency-server", "model.api_key_env=null")
        assert evaluate.run(cfg) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cases"] == 100 and summary["failed_cases"] == 0
    cs = summary["case_set"]
    assert cs["name"] == "ALOE" and cs["cases"] == 100
    assert cs["profiles"]["sha256"] == hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert cs["personalities"]["sha256"] == hashlib.sha256(files[1].read_bytes()).hexdigest()
    assert (cs["profiles"]["items"], cs["personalities"]["items"], cs["personalities"]["used"]) == (20, 7, 5)

    with sqlite3.connect(tmp_path / "e.db") as conn:
        rows = conn.execute("SELECT case_index, profile, personality FROM eval_cases ORDER BY case_index").fetchall()
    assert rows == [(i * 5 + j, profile(i), personality(j)) for i in range(20) for j in range(5)]

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["evaluations"][0]["case_set"] == cs
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Case sets" in md and "ALOE: 100 cases = 20 profiles x the first 5 of 7 personalities" in md
    assert cs["profiles"]["sha256"][:16] in md
