"""Messages a new user meets (issue 18): a missing API key names the unset
variable and how to set it; a Hydra launcher that is not installed names the
package to install. Run as the user runs them (subprocess, one line, exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ALOE = str(Path(sys.executable).with_name("aloe"))


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """The one line on stderr of a refused command (exit 2, no traceback, nothing written)."""
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
                          env=env or {**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not list(cwd.iterdir())  # no database, no sweep folder
    return lines[0]


def test_backend_openai_without_a_key_says_the_variable_is_not_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"HF_HUB_OFFLINE": "1"}
    line = _run([ALOE, "generate", "backend=openai"], tmp_path, env)
    assert line == ("aloe generate: config error: the environment variable OPENAI_API_KEY is not set "
                    "(backend.api_key_env=OPENAI_API_KEY names the variable holding the API key); set it with "
                    "`export OPENAI_API_KEY=...`, or name the variable that holds your key with "
                    "backend.api_key_env=NAME")
    line = _run([ALOE, "personas", "backend=openai", "backend.api_key_env=ALOE_TEST_UNSET_VAR"], tmp_path, env)
    assert "the environment variable ALOE_TEST_UNSET_VAR is not set" in line
    assert "`export ALOE_TEST_UNSET_VAR=...`" in line and "is not allowed" not in line


def test_a_launcher_that_is_not_installed_names_its_package(tmp_path: Path) -> None:
    line = _run([ALOE, "runs", "-m", "db=a.db,b.db", "hydra/launcher=submitit_slurm"], tmp_path)
    assert line.startswith("aloe runs: config error: hydra/launcher='submitit_slurm' is not allowed; expected one "
                           "of basic")
    assert line.endswith("submitit_slurm needs the hydra-submitit-launcher package, not installed here: "
                         "pip install hydra-submitit-launcher")
    assert "Could not find" not in line
    # without -m too (Hydra composes the launcher group with the config)
    line = _run([ALOE, "runs", "hydra/launcher=ray"], tmp_path)
    assert line.endswith("ray needs the hydra-ray-launcher package, not installed here: pip install hydra-ray-launcher")
    # an unknown launcher lists the installed ones
    line = _run([ALOE, "runs", "-m", "db=a.db,b.db", "hydra/launcher=nosuch"], tmp_path)
    assert line.startswith("aloe runs: config error: hydra/launcher='nosuch' is not allowed; expected one of basic")


def test_joblib_not_installed_names_the_dev_extra(tmp_path: Path) -> None:
    """joblib is installed with the dev extra; hide it as a plain install would not have it."""
    hide = ("import sys\n"
            "for m in ('', '.config', '.joblib_launcher', '._core'):\n"
            "    sys.modules['hydra_plugins.hydra_joblib_launcher' + m] = None\n"
            "from aloesim.orchestration.cli import main\n"
            "sys.exit(main(['runs', '-m', 'db=a.db,b.db', 'hydra/launcher=joblib']))\n")
    line = _run([sys.executable, "-c", hide], tmp_path)
    assert line == ("aloe runs: config error: hydra/launcher='joblib' is not allowed; expected one of basic; joblib "
                    "needs the hydra-joblib-launcher package, not installed here: pip install hydra-joblib-launcher "
                    "(or the dev extra: pip install -e '.[dev]')")
