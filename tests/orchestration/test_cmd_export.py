"""``aloe export`` through the command line: files, one-line errors, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aloesim.orchestration.cli import main
from tests.support.training_trees import build_db


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "trees.db"
    build_db(path)
    return path


def test_export_writes_the_four_files(db, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["export", f"db={db}", f"export.dir={out}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dpo.jsonl", "manifest.json", "sft.jsonl", "sft_rejected.jsonl"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"sft": 7, "sft_rejected": 7, "dpo": 7}
    assert "exported 7 nodes of 3 trees" in capsys.readouterr().out


def test_run_filter_and_incomplete(db, tmp_path):
    assert main(["export", f"db={db}", f"export.dir={tmp_path / 'a'}", "export.run=2"]) == 0
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["nodes"] == 1
    assert main(["export", f"db={db}", f"export.dir={tmp_path / 'b'}", "export.run=[1,2]",
                 "export.include_incomplete=true"]) == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["nodes"] == 8


@pytest.mark.parametrize(("overrides", "expected"), [
    (["export.run=42"], "export.run=42 is not allowed"),
    (["export.run=abc"], "export.run='abc' is not allowed"),
    (["db={tmp}/missing.db"], "no such database"),
])
def test_errors_are_one_line_and_write_nothing(db, tmp_path, capsys, overrides, expected):
    out = tmp_path / "data"
    code = main(["export", f"db={db}", f"export.dir={out}", *[o.format(tmp=tmp_path) for o in overrides]])
    err = capsys.readouterr().err.strip()
    assert code == 2 if "export.run" in expected else code != 0
    assert expected in err and len(err.splitlines()) == 1
    assert not out.exists()
