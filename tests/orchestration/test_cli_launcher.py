"""`-m` with a Hydra launcher: the sweep goes through Hydra's multirun, here
the joblib launcher (parallel processes on one host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aloesim.environment.store import connect

ALOE = str(Path(sys.executable).with_name("aloe"))


@pytest.mark.integration
def test_joblib_launcher_runs_every_job(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    for name in ("a.db", "b.db"):
        connect(tmp_path / name, create=True).close()
    proc = subprocess.run([ALOE, "runs", "-m", "db=a.db,b.db", "format=json", "hydra/launcher=joblib"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr
    outputs = []
    for line in proc.stdout.splitlines():
        try:
            outputs.append(json.loads(line))
        except ValueError:
            continue  # Hydra's own log lines
    assert outputs == [[], []]  # one JSON listing per job (empty databases: no runs)
    sweep = next((tmp_path / "aloe-multirun").iterdir())
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    overrides = {(sweep / j / ".hydra" / "overrides.yaml").read_text() for j in jobs}
    assert any("db=a.db" in o for o in overrides) and any("db=b.db" in o for o in overrides)


@pytest.mark.integration
def test_a_failing_job_stops_the_sweep_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([ALOE, "runs", "-m", "db=missing.db", "hydra/launcher=basic"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert "aloe runs: database error: missing.db: no such database" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_hydra_interpolations_resolve_inside_launcher_jobs(tmp_path: Path) -> None:
    for name in ("s_0.db", "s_1.db"):
        connect(tmp_path / name, create=True).close()
    proc = subprocess.run([ALOE, "runs", "-m", "db=s_${hydra:job.num}.db", "kind=generate,personas", "format=json",
                           "hydra/launcher=basic"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "s_${hydra:job.num}.db").exists()  # each job opened its own existing file
