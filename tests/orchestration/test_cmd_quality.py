"""``aloe quality`` and ``aloe export export.exclude=[...]`` end to end on a
small real database (tests/support/quality_trees.write_flagged, whose flags
are known): files, printed summary, manifest counts, one-line errors that
write nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from aloesim.orchestration.cli import main
from tests.support.quality_trees import write_flagged

ALOE = str(Path(sys.executable).with_name("aloe"))


@pytest.fixture(autouse=True)
def _restore_logging():
    """``main`` configures logging onto capsys's stream; undo that for later tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "trees.db"
    return path, write_flagged(path)


def test_quality_writes_the_report_and_prints_the_summary(db, tmp_path, capsys) -> None:
    path, ids = db
    out = tmp_path / "q"
    assert main(["quality", f"db={path}", f"run={ids['run']}", f"quality.out_dir={out}", "quality.embedder=null"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quality.md", "quality.png"]
    report = json.loads((out / "quality.json").read_text())
    m = report["metrics"]
    # 9 nodes: leaked A'p' C'p'; role flips A'pr' D''; empty B''; duplicates A'pr' B'p'
    assert (m["leakage"]["count"], m["role_flips"]["count"], m["empty"]["count"], m["duplicates"]["count"]) == (2, 2, 1, 2)
    assert m["leakage"]["of"] == 9 and report["run"]["trees_by_status"] == {"complete": 3, "failed": 1}
    assert (m["judge_agreement"]["judged"], m["judge_agreement"]["agree"]) == (3, 1)
    printed = capsys.readouterr().out
    assert f"quality of run {ids['run']}: 9 nodes of 4 trees" in printed
    assert "  ! leakage 0.222 > 0.05: 2 of 9 user messages recite the persona" in printed
    assert f"wrote {out / 'quality.json'}" in printed


def test_quality_defaults_to_the_newest_generate_run_and_a_folder_named_after_it(db, tmp_path, monkeypatch) -> None:
    path, ids = db
    monkeypatch.chdir(tmp_path)
    assert main(["quality", f"db={path}", "quality.embedder=null"]) == 0
    report = json.loads((tmp_path / f"quality-run{ids['other']}" / "quality.json").read_text())
    assert report["run"]["id"] == ids["other"] and report["metrics"]["leakage"]["count"] == 1


@pytest.mark.parametrize(("overrides", "expected", "code"), [
    (["run=99"], "config error: run=99 is not allowed; expected the id of a generate run in this database (have [1, 2])", 2),
    (["run=abc"], "config error: run='abc' is not allowed", 2),
    (["quality.max_leak_rate=2"], "config error: quality.max_leak_rate=2.0 is not allowed; expected a number in [0, 1]", 2),
    (["quality.embedder=/no/such/model"], "config error: quality.embedder='/no/such/model' is not allowed", 2),
    (["db={tmp}/missing.db"], "database error:", 1),
    (["quality.out_dir={tmp}/afile"], "config error: quality.out_dir=", 2),
])
def test_quality_errors_are_one_line_and_write_nothing(db, tmp_path, capsys, overrides, expected, code) -> None:
    path, _ = db
    (tmp_path / "afile").write_text("not a folder")
    out = [o.format(tmp=tmp_path) for o in overrides]
    if not any(o.startswith("quality.out_dir") for o in out):
        out.append(f"quality.out_dir={tmp_path / 'q'}")
    if not any(o.startswith("quality.embedder") for o in out):
        out.append("quality.embedder=null")
    assert main(["quality", f"db={path}", *out]) == code
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "q").exists() and (tmp_path / "afile").read_text() == "not a folder"


def test_export_excludes_flagged_nodes_and_their_dependents(db, tmp_path, capsys) -> None:
    path, ids = db
    out = tmp_path / "data"
    assert main(["export", f"db={path}", f"export.dir={out}", f"export.run={ids['run']}",
                 "export.exclude=[leaked,judge_disagree,duplicate]"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # complete trees of run 1: A '', 'p', 'pr'; B '', 'p'; C '', 'p', 'r' (8 nodes).
    # A 'p' is leaked and judge_disagree (A 'pr' depends on it, and is a duplicate itself);
    # B 'p' duplicate; C 'p' leaked. Kept: A '', B '', C '', C 'r'.
    assert manifest["excluded"] == {"leaked": 2, "judge_disagree": 1, "duplicate": 2, "dependents": 0, "total": 4}
    assert manifest["nodes"] == 4 and manifest["counts"] == {"sft": 4, "sft_rejected": 4, "dpo": 4}
    assert manifest["filter"]["exclude"] == ["leaked", "judge_disagree", "duplicate"]
    kept = [json.loads(line)["prompt"][-1]["content"] for line in (out / "sft.jsonl").read_text().splitlines()]
    assert "Hello! How can I help you today?" not in kept and len(kept) == 4
    printed = capsys.readouterr().out
    assert "exported 4 nodes of 3 trees" in printed
    assert "excluded 4 nodes: leaked=2 judge_disagree=1 duplicate=2 dependents=0" in printed
    # the dependents rule: excluding only judge_disagree drops A 'p' and, with it, A 'pr'
    assert main(["export", f"db={path}", f"export.dir={tmp_path / 'j'}", "export.exclude=[judge_disagree]"]) == 0
    assert json.loads((tmp_path / "j" / "manifest.json").read_text())["excluded"] == {
        "judge_disagree": 1, "dependents": 1, "total": 2}


def test_export_without_exclusions_counts_none(db, tmp_path) -> None:
    path, _ = db
    assert main(["export", f"db={path}", f"export.dir={tmp_path / 'd'}"]) == 0
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["excluded"] == {"dependents": 0, "total": 0} and manifest["nodes"] == 9


@pytest.mark.parametrize(("overrides", "expected"), [
    (["export.exclude=[leaked,boring]"],
     "config error: export.exclude=['leaked', 'boring'] is not allowed; expected a list of truncated | leaked"),
    (["export.run=2", "export.exclude=[leaked]"], "all 1 selected nodes are excluded by export.exclude=['leaked']"),
    (["export.exclude=[leaked]", "quality.leak_min_words=0"], "config error: quality.leak_min_words=0"),
])
def test_export_exclusion_errors_write_nothing(db, tmp_path, capsys, overrides, expected) -> None:
    path, _ = db
    out = tmp_path / "data"
    assert main(["export", f"db={path}", f"export.dir={out}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_quality_as_a_user_runs_it(db, tmp_path) -> None:
    """The installed ``aloe`` script, in a subprocess: exit 0, files, no traceback."""
    path, ids = db
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([ALOE, "quality", f"db={path}", f"run={ids['run']}", "quality.embedder=null"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"quality-run{ids['run']}" / "quality.md").exists() and "Traceback" not in done.stderr
