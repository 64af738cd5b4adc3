"""Issue 18 ("Terminal output", "Runs and the viewer"): long commands end, on a
terminal, with a human summary before their JSON line (piped: the JSON line
only); ``aloe runs`` shows a run stopped with Ctrl-C as ``interrupted`` and
its wall time one way; ``aloe show`` with no target says what to pass.

The subprocess tests run real ``aloe generate`` processes against the
deterministic loopback latency server (benchmarks/latency_server.py), once
on a pseudo-terminal and once on a pipe, and stop one with SIGINT sent to its
whole process group (what Ctrl-C on a terminal does)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aloesim.environment.store import connect
from aloesim.inspection import end_of_command, evaluate_lines, generate_lines, personas_lines, wall_text
from aloesim.orchestration import cli
from tests.support.sample_db import write_sample

ROOT = Path(__file__).resolve().parents[2]
from _common import ServerProcess, latency_server

ALOE = [sys.executable, "-m", "aloesim.orchestration.cli"]
KEY_VAR = "ALOE_SUMMARY_TEST_KEY"
WALL = re.compile(r"^\d[\d,]*\.\d\d s$")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- the rule, in process -------------------------------------------------------------------------

def test_piped_prints_the_json_line_only_and_never_builds_the_summary() -> None:
    out, called = io.StringIO(), []
    end_of_command('{"a": 1}', lambda: called.append(1) or ["hello"], out=out)
    assert out.getvalue() == '{"a": 1}\n' and called == []


def test_on_a_terminal_the_summary_comes_first_terminal_safe_and_the_json_line_last() -> None:
    out = _Tty()
    end_of_command('{"a": 1}', lambda: ["made \x1b[2J 3 trees", "where: x.db"], out=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == '{"a": 1}' and lines[0].startswith("made ") and "\x1b" not in out.getvalue()
    assert lines[1] == "where: x.db"


def test_a_summary_that_cannot_be_built_still_ends_with_the_json_line() -> None:
    out = _Tty()
    end_of_command("{}", lambda: 1 / 0, out=out)  # type: ignore[arg-type, return-value]
    assert out.getvalue().splitlines() == ["(no summary: ZeroDivisionError: division by zero)", "{}"]


def test_wall_time_is_shown_one_way() -> None:
    assert [wall_text(s) for s in (0.02, 81.98, 81.9, 120, 3725.456)] == \
        ["0.02 s", "81.98 s", "81.90 s", "120.00 s", "3,725.46 s"]
    assert all(WALL.match(wall_text(s)) for s in (0.0, 0.004, 59.999, 1e6))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("summaries") / "sample.db"
    return path, write_sample(path)


def test_generate_summary_names_failed_trees_and_the_next_step(sample) -> None:
    db, ids = sample
    lines = generate_lines(str(db), {"run_id": ids["run1"], "llm_calls": 7, "prompt_tokens": 10,
                                     "completion_tokens": 5, "call_failures": 2})
    text = "\n".join(lines)
    assert lines[0].startswith(f"run #{ids['run1']} (generate) ") and "7 LLM calls, 15 tokens" in text
    assert "1 tree failed (first: tree #" in text and "re-run the same command with retry_failed=true" in text
    assert f"aloe show db={db} run={ids['run1']}" in text and "2 LLM calls failed after their retries" in text


def test_evaluate_and_personas_summaries(sample) -> None:
    db, _ids = sample
    conn = sqlite3.connect(db)
    evaluation = conn.execute("SELECT MIN(id) FROM evaluations").fetchone()[0]
    conn.close()
    lines = evaluate_lines(str(db), {"evaluation_id": evaluation, "wall_s": 3.5, "failed_cases": 3,
                                     "judge_failures": 1, "judge_reliable": False,
                                     "report": {"md": "out/report.md", "json": "out/report.json"}})
    text = "\n".join(lines)
    assert lines[0].startswith(f"evaluation #{evaluation} (") and " in 3.50 s: " in lines[0]
    assert "average AL " in lines[0] and "report: out/report.md, out/report.json" in text
    assert "3 cases failed: once the cause is fixed, re-run the same command to continue them" in text
    assert "show.calls=true" in text and "the judge failed its check" in text
    grow = personas_lines("p.db", {"action": "import", "profiles_kept": 30, "personalities_kept": 3,
                                   "notices": ["the filter dropped 301 of 331"]})
    assert grow[0] == "imported into p.db: 30 profiles and 3 personalities kept"
    assert "notice: the filter dropped 301 of 331" in grow and grow[-1].startswith("next: `aloe generate db=p.db`")
    assert personas_lines("p.db", {"action": "stats"}) == []


# -- aloe show with nothing to show ---------------------------------------------------------------

def test_show_with_no_target_says_what_to_pass(sample, capsys) -> None:
    code = cli.main(["show", f"db={sample[0]}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "None" not in err
    assert err.startswith("aloe show: nothing to show: pass one of tree=ID | run=ID | evaluation=ID | case=ID")
    assert "`aloe runs db=PATH` lists the runs" in err


# -- real processes: a pseudo-terminal, a pipe, Ctrl-C ----------------------------------------------

def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", KEY_VAR: "sk-test-not-a-secret", "COLUMNS": "200"}


def _add_personas(db: Path, n: int) -> None:
    conn = connect(db, create=True)
    with conn:
        conn.execute("BEGIN")
        for i in range(n):
            texts = (f"I keep bees, number {i}, and I fix old radios.", f"Blunt number {i}, patient, curious.")
            ids = [conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                                " VALUES (?, 'train', ?, 'seed', 0)", (kind, text)).lastrowid
                   for kind, text in zip(("profile", "personality"), texts)]
            conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at)"
                         " VALUES (?, ?, 'train', 0)", ids)
        conn.execute("COMMIT")
    conn.close()


def _generate_args(db: Path, url: str, trees: int, turns: int) -> list[str]:
    return ["generate", f"db={db}", f"generation.trees={trees}", f"generation.turns={turns}",
            "generation.progress=off", "generation.estimate=false", "log.format=json", "backend=openai",
            f"backend.base_url={url}", f"backend.api_key_env={KEY_VAR}", "backend.dialect=openai",
            "backend.timeout=10"]


def _on_a_pty(args: list[str], err: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``aloe ARGS`` with stdout on a pseudo-terminal; (exit code, what it printed there)."""
    master, slave = pty.openpty()
    with err.open("wb") as fh:
        proc = subprocess.Popen([*ALOE, *args], env=_env(), cwd=ROOT, stdout=slave, stderr=fh,
                                stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with latency_server(latency=0.05, seed=3) as s:
        yield s


@pytest.mark.integration
def test_generate_on_a_terminal_ends_with_a_summary_and_piped_with_json_only(tmp_path: Path, server) -> None:
    tty_db, pipe_db = tmp_path / "tty.db", tmp_path / "pipe.db"
    for db in (tty_db, pipe_db):
        _add_personas(db, 2)
    code, shown = _on_a_pty(_generate_args(tty_db, server.base_url, 2, 2), tmp_path / "tty.log")
    assert code == 0, (tmp_path / "tty.log").read_text()[-2000:]
    lines = shown.strip().splitlines()
    stats = json.loads(lines[-1])  # the JSON line stays, last
    assert stats["trees_complete"] == 2 and stats["run_id"] == 1
    assert re.match(r"run #1 \(generate\) complete in \d[\d,]*\.\d\d s: 2 trees \(2 complete\), \d+ nodes, "
                    r"\d+ LLM calls, [\d,]+ tokens$", lines[0]), lines
    assert lines[1].startswith(f"stored in {tty_db}: `aloe show db={tty_db} run=1` lists its trees")
    assert len(lines) == 3 and "\x1b" not in shown  # nothing failed: no failure line

    piped = subprocess.run([*ALOE, *_generate_args(pipe_db, server.base_url, 2, 2)], env=_env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert len(piped.stdout.splitlines()) == 1 and json.loads(piped.stdout)["trees_complete"] == 2


@pytest.mark.integration
def test_ctrl_c_marks_the_run_interrupted_and_aloe_runs_says_so(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    _add_personas(db, 3)
    with latency_server(latency=0.25, seed=4) as slow, (tmp_path / "gen.log").open("wb") as log:
        proc = subprocess.Popen([*ALOE, *_generate_args(db, slow.base_url, 3, 10)], env=_env(), cwd=ROOT,
                                start_new_session=True, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    nodes = conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
                    conn.close()
                except sqlite3.Error:
                    nodes = 0
                if nodes >= 2:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, (tmp_path / "gen.log").read_text()[-2000:]
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
            _out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    err = (tmp_path / "gen.log").read_text()
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("aloe generate: interrupted (SIGINT)")
    listed = subprocess.run([*ALOE, "runs", f"db={db}"], env=_env(), cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    cells = re.split(r"\s{2,}", row.strip())
    assert cells[:3] == ["1", "generate", "interrupted"], listed.stdout
    assert "wall" in header
    wall = next(c for c in cells if c.endswith(" s"))
    assert WALL.match(wall) and float(wall[:-2].replace(",", "")) > 0, row
    as_json = json.loads(subprocess.run([*ALOE, "runs", f"db={db}", "format=json"], env=_env(), cwd=ROOT,
                                        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert as_json[0]["status"] == "interrupted" and as_json[0]["stats"].get("interrupted") is True
