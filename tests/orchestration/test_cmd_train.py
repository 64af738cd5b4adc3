"""``aloe train`` through the command line: one-line errors before anything is written,
and (integration) the acceptance interface with a few real steps per stage."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aloesim.orchestration.cli import main
from tests.support.training_trees import build_db


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "trees.db"
    build_db(path)
    return path


def _runs(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize(("override", "expected"), [
    ("training.stage=ppo", "training.stage='ppo' is not allowed; expected sft | dpo | sft+dpo"),
    ("training.max_steps=-3", "training.max_steps=-3 is not allowed"),
    ("training.base_model=/no/such/dir", "training.base_model='/no/such/dir' is not allowed"),
    ("training.runs=77", "training.runs=77 is not allowed"),
])
def test_bad_config_is_one_line_and_writes_nothing(db, tmp_path, capsys, override, expected):
    out = tmp_path / "ckpt"
    before = _runs(db)
    code = main(["train", f"db={db}", "training=tiny", f"training.output_dir={out}", override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in err and len(err.splitlines()) == 1
    assert not out.exists() and _runs(db) == before


def test_empty_dataset(tmp_path, capsys):
    from aloesim.environment.store import connect

    db = tmp_path / "empty.db"
    connect(db, create=True).close()
    code = main(["train", f"db={db}", "training=tiny", f"training.output_dir={tmp_path / 'ckpt'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no complete trees" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "ckpt").exists() and _runs(db) == 0


def test_help_lists_the_training_config(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "beta: 0.9" in out and "effective_batch: 48" in out


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_aloe_train_acceptance_interface(db, tmp_path, tmp_path_factory):
    """`aloe train db=PATH training.stage=sft+dpo training.max_steps=N training.output_dir=DIR`
    in a subprocess, as the acceptance check runs it (tiny sequences to stay quick)."""
    out = tmp_path / "ckpt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ALOESIM_CACHE": str(tmp_path_factory.getbasetemp() / "aloesim-cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "aloesim.orchestration.cli", "train", f"db={db}", "training.stage=sft+dpo",
         "training.max_steps=1", f"training.output_dir={out}", "training.max_length=96",
         "training.sft.effective_batch=2", "training.dpo.effective_batch=2"],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"final model: {out.resolve() / 'final'}" in proc.stdout
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert model.config.model_type == "llama"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s for s in metrics["stages"]] == ["sft", "dpo"]
    assert all(metrics["stages"][s]["metrics"]["global_step"] == 1 for s in ("sft", "dpo"))
