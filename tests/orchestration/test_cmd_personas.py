"""``aloe personas``: config validation, import/export/stats, growth end to end."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog

from aloesim.core.errors import ConfigError, InputError
from aloesim.environment.personas import read_items, seed_items
from aloesim.orchestration import compose_config
from aloesim.orchestration.cli import run_command
from aloesim.orchestration.commands import personas as cmd


def cfg_for(*overrides: str):
    return compose_config("personas", list(overrides))


def aloe(*overrides: str) -> int:
    """``aloe personas OVERRIDES`` as the command line runs it (config, logging to stderr, run)."""
    return run_command("personas", list(overrides))


@pytest.fixture(autouse=True)
def _reset_logging():
    """``run_command`` configures structlog for the process, onto this test's
    captured stderr; put the defaults back so later tests do not log to a closed stream."""
    yield
    structlog.reset_defaults()


def _jsonl(path: Path, items: list[str]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


# -- config ------------------------------------------------------------------

@pytest.mark.parametrize(("override", "key"), [
    ("personas.threshold=1.5", "personas.threshold"),
    ("personas.threshold=-0.1", "personas.threshold"),
    ("personas.threshold=abc", "personas.threshold"),
    ("personas.target_profiles=-1", "personas.target_profiles"),
    ("personas.target_personalities=2.5", "personas.target_personalities"),
    ("personas.pairs=-3", "personas.pairs"),
    ("personas.keep_rate=0", "personas.keep_rate"),
    ("personas.keep_rate=1.2", "personas.keep_rate"),
    ("personas.parallel=0", "personas.parallel"),
    ("personas.batch=0", "personas.batch"),
    ("personas.action=destroy", "personas.action"),
    ("import.split=test", "import.split"),
    ("filter=maybe", "filter"),
    ("personas.stats.thresholds=[0.5,2]", "personas.stats.thresholds"),
    ("personas.action=import", "import.profiles"),
    ("personas.action=export", "export.dir"),
])
def test_bad_config_is_one_config_error(tmp_path: Path, override: str, key: str) -> None:
    db = tmp_path / "x.db"
    with pytest.raises(ConfigError) as info:
        cmd.run(cfg_for(f"db={db}", override))
    assert info.value.key == key
    assert "\n" not in str(info.value)
    assert not db.exists()


def test_defaults_follow_the_paper() -> None:
    s = cmd.settings(cfg_for())
    assert (s.threshold, s.batch, s.shots) == (0.6, 20, 5)
    assert (s.targets, s.pairs) == ({"profile": 330, "personality": 71}, 3310)
    assert cmd.resolve_action(s) == "grow"
    assert cmd.resolve_action(cmd.settings(cfg_for("import.profiles=a.jsonl"))) == "import"
    assert cmd.resolve_action(cmd.settings(cfg_for("export.dir=out"))) == "export"


def test_a_bad_file_imports_nothing(tmp_path: Path) -> None:
    good = _jsonl(tmp_path / "good.jsonl", seed_items("profile"))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'"fine"\n"also fine" {"not": "a string"}\n')
    db = tmp_path / "p.db"
    with pytest.raises(InputError) as info:
        cmd.run(cfg_for(f"db={db}", f"import.profiles={good}", f"import.personalities={bad}"))
    assert (info.value.path, info.value.line, info.value.column) == (str(bad), 2, 13)
    assert not db.exists()  # the database was never opened


def test_missing_database_for_export_and_stats(tmp_path: Path) -> None:
    from aloesim.core.errors import StoreError

    with pytest.raises(StoreError):
        cmd.run(cfg_for(f"db={tmp_path / 'none.db'}", f"export.dir={tmp_path / 'out'}"))
    assert not (tmp_path / "none.db").exists()


# -- with the real embedder ------------------------------------------------------

@pytest.mark.integration
def test_import_export_stats_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prof = seed_items("profile")
    pers = seed_items("personality")
    # a flawed but readable file: BOM, blank lines, two values on one line, one near-copy
    flawed = tmp_path / "profiles.jsonl"
    lines = [json.dumps(p) for p in prof]
    flawed.write_text("\ufeff" + lines[0] + "\n\n" + lines[1] + " " + lines[2] + "\n" + "\n".join(lines[3:]) + "\n"
                      + json.dumps(prof[0].upper()) + "\n", encoding="utf-8")
    pers_file = _jsonl(tmp_path / "personalities.jsonl", pers)
    db = tmp_path / "p.db"

    assert aloe(f"db={db}", f"import.profiles={flawed}", f"import.personalities={pers_file}",
                "personas.threshold=0.6") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    summary = json.loads(out[0])
    assert summary["profiles_kept"] == 20           # 21 read, the upper-cased copy dropped
    assert summary["profiles"]["dropped_similar"] == 1
    assert 5 <= summary["personalities_kept"] < 20  # our personality seeds do overlap at 0.6 (see stats)

    # importing the same files again adds nothing
    aloe(f"db={db}", f"import.profiles={flawed}", f"import.personalities={pers_file}")
    again = json.loads(capsys.readouterr().out)
    assert (again["profiles_kept"], again["personalities_kept"]) == (0, 0)

    # a keep-rate calibrates the threshold: everything passes at rate 1.0 into a fresh db
    db2 = tmp_path / "q.db"
    aloe(f"db={db2}", f"import.personalities={pers_file}", "personas.keep_rate=1.0")
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["personalities_kept"] == 20 and calibrated["personalities"]["threshold"] > 0.6

    aloe(f"db={db}", "personas.action=pair", "personas.pairs=12")
    assert json.loads(capsys.readouterr().out)["pairs"]["train"]["total"] == 12

    out_dir = tmp_path / "export"
    aloe(f"db={db}", f"export.dir={out_dir}")
    exported = json.loads(capsys.readouterr().out)
    assert (exported["profiles"], exported["personas"]) == (20, 12)
    assert read_items(out_dir / "profiles.jsonl") == prof
    personas = [json.loads(x) for x in (out_dir / "personas.jsonl").read_text().splitlines()]
    assert len(personas) == 12 and set(personas[0]) == {"id", "profile", "personality"}
    assert all(p["profile"] in prof and p["personality"] in pers for p in personas)

    aloe(f"db={db}", "personas.action=stats")
    stats = json.loads(capsys.readouterr().out)
    assert stats["profile"]["train"]["n"] == 20 and stats["profile"]["train"]["kept_at_threshold"]["0.6"] == 20
    assert stats["personas"] == {"train": 12, "eval": 0}
    aloe("personas.action=stats", f"import.personalities={pers_file}")
    file_stats = json.loads(capsys.readouterr().out)
    assert file_stats["personality"]["n"] == 20 and file_stats["personality"]["kept_at_threshold"]["0.6"] < 20

    conn = sqlite3.connect(db)
    runs = conn.execute("SELECT kind, status FROM runs ORDER BY id").fetchall()
    assert runs and all(r == ("personas", "complete") for r in runs)


# -- growth with the real embedded model -------------------------------------------

def _grow_overrides(db: Path, url: str, profiles: int, personalities: int, pairs: int = 6) -> list[str]:
    return [f"db={db}", f"+backend.base_url={url}", f"personas.target_profiles={profiles}",
            f"personas.target_personalities={personalities}", f"personas.pairs={pairs}", "personas.eval_pairs=3",
            "personas.batch=3", "personas.shots=2", "personas.parallel=1", "personas.max_iterations=4",
            "agents.generator.max_tokens=120", "log.level=WARNING"]


def _events(db: Path, kind: str) -> list[dict]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [json.loads(r[0]) for r in conn.execute(
            "SELECT payload FROM events WHERE kind = ? ORDER BY id", (f"personas.{kind}.iteration",))]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


@pytest.mark.integration
def test_grow_with_the_embedded_model_kill_and_resume(tmp_path: Path, embedded_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "grow.db"
    overrides = _grow_overrides(db, embedded_url, 40, 40)

    def start_and_stop(sig: int) -> int:
        """Run `aloe personas` in a process of its own; send ``sig`` once it has
        committed one more iteration than before. Returns its exit code."""
        seen = len(_events(db, "profile")) + len(_events(db, "personality"))
        proc = subprocess.Popen([sys.executable, "-m", "aloesim.orchestration.cli", "personas", *overrides],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 400
            while len(_events(db, "profile")) + len(_events(db, "personality")) <= seen:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "no iteration committed in time"
                time.sleep(0.3)
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.wait()
        return proc.returncode

    # 1. SIGTERM: a clean stop like Ctrl-C, the run is marked interrupted (exit 128 + SIGTERM)
    assert start_and_stop(signal.SIGTERM) == 143
    assert sqlite3.connect(db).execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    # 2. SIGKILL: no cleanup at all
    start_and_stop(signal.SIGKILL)
    before = {k: _events(db, k) for k in ("profile", "personality")}
    # 3. run again (in process): it continues after the committed iterations
    assert aloe(*overrides) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for kind in ("profile", "personality"):
        after = _events(db, kind)
        assert after[: len(before[kind])] == before[kind]
        assert [e["iteration"] for e in after] == list(range(len(after)))  # no iteration done twice
        assert len(after) == 4 or summary[kind]["stop"] in ("target", "bottleneck")
    conn = sqlite3.connect(db)
    generated = conn.execute("SELECT COUNT(*) FROM persona_items WHERE source = 'generated'").fetchone()[0]
    assert generated == summary["profiles"] + summary["personalities"] - 40
    calls = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE role = 'generator'").fetchone()[0]
    assert calls >= 8  # 4 iterations per pool, across the two processes
    assert summary["pairs"]["train"]["total"] == 6 and summary["pairs"]["eval"]["total"] == 3
    splits = conn.execute("SELECT DISTINCT p.split, a.split, b.split FROM personas p JOIN persona_items a"
                          " ON a.id = p.profile_id JOIN persona_items b ON b.id = p.personality_id").fetchall()
    assert sorted(splits) == [("eval", "eval", "eval"), ("train", "train", "train")]


# -- what an import says (published format, real embedder) --------------------------

def _published_like(path: Path) -> Path:
    """Profiles written to one template (as the published pool is: MiniLM puts them within 0.6 of each
    other), in the published format, with line 6 holding two JSON values as the published profile.jsonl does."""
    jobs = ["nurse", "teacher", "plumber", "lawyer", "baker", "pilot", "farmer", "chemist", "dentist", "painter",
            "welder", "banker"]
    lines = [json.dumps(f"She is {30 + i} years old. She works as a {job} and lives in a small town with her "
                        "husband and two children. She likes gardening on weekends.") for i, job in enumerate(jobs)]
    lines[5] += " " + lines.pop(6)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.integration
def test_import_says_what_the_filter_dropped_and_which_line_held_two(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = _published_like(tmp_path / "profile.jsonl")
    assert aloe(f"db={tmp_path / 'a.db'}", f"import.profiles={src}", "log.format=console") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    read, kept = summary["profiles"]["read"], summary["profiles_kept"]
    assert read == 12 and kept * 2 < read  # most of a template pool is within 0.6 with MiniLM
    shared, dropped = summary["notices"]
    assert shared == f"{src}: line 6 held 2 JSON values; each value was read as its own item (12 items from 11 lines)"
    assert dropped.startswith(f"profile import (train): the similarity filter dropped {read - kept} of 12 items "
                              f"as within 0.6 cosine of another (kept {kept}); to keep them, import with filter=false")
    assert "personas.keep_rate=" in dropped and "personas.action=stats import.profiles=FILE" in dropped
    for notice in (shared, dropped):  # also said on stderr, as warnings
        assert notice.split(";")[0] in captured.err
    # the documented way to import the published files: every item, only exact duplicates dropped
    assert aloe(f"db={tmp_path / 'b.db'}", f"import.profiles={src}", "import.split=eval", "filter=false") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["profiles_kept"] == 12 and summary["profiles"]["split"] == "eval"
    assert summary["notices"] == [shared]
