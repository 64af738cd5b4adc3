"""The ``aloe`` command as a user runs it (a subprocess of the venv's
script): help, and config mistakes that must end in exactly one line on
stderr, exit code 2, no traceback and no database file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aloesim.orchestration.cli import available_commands

ALOE = str(Path(sys.executable).with_name("aloe"))


def aloe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([ALOE, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    out = aloe("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(available_commands())
    for expected in ("serve", "personas", "generate", "export", "train", "evaluate", "report", "show", "view"):
        assert expected in listed
    assert not list(tmp_path.iterdir())


def test_unknown_key_is_one_line_and_creates_no_database(tmp_path: Path) -> None:
    line = one_line_error(aloe("generate", "db=x.db", "nosuchkey=1", cwd=tmp_path))
    assert line.startswith("aloe generate: config error: nosuchkey=")
    assert not (tmp_path / "x.db").exists() and not list(tmp_path.iterdir())


def test_bad_group_option_lists_the_options(tmp_path: Path) -> None:
    line = one_line_error(aloe("generate", "db=x.db", "backend=nope", cwd=tmp_path))
    assert "backend='nope'" in line
    for option in ("embedded", "openai", "vllm"):
        assert option in line
    assert not list(tmp_path.iterdir())


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    line = one_line_error(aloe("generate", "db=x.db", "generation.turns=-1", cwd=tmp_path))
    assert "generation.turns=-1" in line
    assert not list(tmp_path.iterdir())


def test_multirun_with_an_invalid_combination_runs_no_job(tmp_path: Path) -> None:
    out = aloe("generate", "-m", "db=x.db", "backend=embedded,nope", cwd=tmp_path)
    line = one_line_error(out)
    assert "backend='nope'" in line and "[aloe -m] job" not in out.stderr
    assert not list(tmp_path.iterdir())


def test_unknown_command_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(aloe("frobnicate", cwd=tmp_path))
    assert "unknown command 'frobnicate'" in line and "generate" in line


def test_command_help_shows_its_config(tmp_path: Path) -> None:
    out = aloe("generate", "--help", "generation.turns=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "db: aloe.db" in out.stdout and "turns: 3" in out.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flag", ["--version"])
def test_version(tmp_path: Path, flag: str) -> None:
    out = aloe(flag, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("aloesim ")


def test_multirun_runs_the_commands_own_checks_on_every_job_first(tmp_path: Path) -> None:
    # job 1 alone would run (and fail on the missing database); job 2's format is refused
    # by the command's validate(), so no job may start
    out = aloe("show", "-m", "db=x.db", "tree=1", "show.format=json,bogus", cwd=tmp_path)
    line = one_line_error(out)
    assert "show.format='bogus'" in line and "[aloe -m] job" not in out.stderr
    assert not list(tmp_path.iterdir())


def test_a_reader_that_stops_reading_is_no_traceback() -> None:
    """`aloe generate --help | head -1`: the pipe closes early; aloe stops quietly."""
    import subprocess
    import sys
    from pathlib import Path

    aloe = str(Path(sys.executable).with_name("aloe"))
    done = subprocess.run(f"'{aloe}' generate --help | head -1", shell=True, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.startswith("aloe generate:") and done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
