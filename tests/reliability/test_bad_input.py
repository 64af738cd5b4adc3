"""Bad input (issue 7): every mistake below gets a one-line error naming the
problem (file and line where there is one), a non-zero exit, no traceback,
and leaves the database exactly as it was (or not created).

A server that is unreachable when the command starts is found by a TCP
connect before the database is opened: one line, nothing written. A server
that goes away mid-run must not lose the run, so that is handled like any
other fault: each call is retried with backoff, then the trees fail with the
connection error as their reason, the command prints its summary and exits 3;
the run can be resumed with ``retry_failed=true`` once the server is back.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.reliability import add_personas, aloe, backend_args, file_state, write_benchmark

pytestmark = pytest.mark.integration

GEN = ["generation.trees=2", "generation.turns=2", "generation.progress=off"]


def one_line_error(done, *needles: str) -> str:
    assert done.code != 0, done.out
    assert "Traceback" not in done.err and "Traceback" not in done.out, done.err
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert len(lines) == 1, done.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    """A database with two personas (an existing run's state to protect)."""
    db = tmp_path / "seeded.db"
    add_personas(db, 2)
    return db


def jsonl(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_FILES = {
    "malformed": (b'"a fine profile with enough words in it"\n{"broken": \n', ":2:", "invalid JSON"),
    "empty": (b"", "", "file is empty"),
    "not_utf8": (b'"a fine profile with enough words in it"\n"caf\xe9 owner who walks"\n', ":2:", "not UTF-8"),
    "huge_line": (b'"' + b"a" * 10_000_000 + b'"\n', ":1:", "characters long"),
    # characters no text may hold (issue 12.7), written raw or escaped: refused where they are
    "lone_surrogate": (b'"a fine profile with enough words in it"\n"a cut emoji \\ud83d here"\n', ":2:14:",
                       "lone UTF-16 surrogate"),
    "noncharacter": ('"a fine profile with enough words in it"\n"odd \uffff"\n'.encode(), ":2:6:",
                     "noncharacter (U+FFFF)"),
    "fffe_escaped": (b'"odd \\ufffe text"\n', ":1:6:", "noncharacter (U+FFFE)"),
    "nul": (b'"ok words"\n"with a \\u0000 inside"\n', ":2:9:", "NUL"),
    "escape_sequence": (b'"clears \x1b[2J the screen"\n', ":1:9:", "control character (U+001B)"),
    "utf16": ('"a fine profile with enough words in it"\n'.encode("utf-16"), ":1:1:", "UTF-16"),
    "latin1_line": (b'"a fine profile with enough words in it"\r\n"caf\xe9 owner"\r\n', ":2:5:", "not UTF-8"),
}


@pytest.mark.parametrize(("command", "kind"), [("personas", k) for k in sorted(BAD_FILES)]
                         + [("evaluate", "malformed"), ("evaluate", "huge_line")])  # (the same reader)
def test_bad_jsonl_files(tmp_path: Path, seeded: Path, server, kind: str, command: str) -> None:
    data, where, what = BAD_FILES[kind]
    bad = jsonl(tmp_path, f"{kind}.jsonl", data)
    before = file_state(seeded)
    if command == "personas":
        done = aloe("personas", f"db={seeded}", f"import.profiles={bad}")
    else:
        good = write_benchmark(tmp_path)
        done = aloe("evaluate", f"db={seeded}", f"benchmark.profiles={bad}", good[1],
                    *backend_args(server.base_url), f"model.base_url={server.base_url}", "model=openai",
                    f"evaluation.out_dir={tmp_path / 'out'}")
    one_line_error(done, f"{bad}{where}", what)
    assert file_state(seeded) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["lone_surrogate", "nul", "utf16"])
def test_a_bad_persona_file_leaves_no_database_behind(tmp_path: Path, kind: str) -> None:
    data, where, what = BAD_FILES[kind]
    bad = jsonl(tmp_path, f"{kind}.jsonl", data)
    db = tmp_path / "never.db"
    done = aloe("personas", f"db={db}", f"import.profiles={bad}")
    one_line_error(done, f"{bad}{where}", what)
    assert not db.exists() and not list(tmp_path.glob("never.db*"))


def test_clean_non_ascii_files_with_bom_and_crlf_import(tmp_path: Path) -> None:
    """What is refused above is only what no text may hold: a BOM, CRLF line ends,
    accents, CJK, an emoji written raw or as a surrogate pair escape all import."""
    profiles = ["Une chef pâtissière à Lyon qui adore le café.", "北京的一位退休教师，喜欢书法。",
                "A surfer from Porto who loves 🌊 and early mornings.", "A baker who signs cards with 😀 always."]
    raw = ("\ufeff" + "\r\n".join(json.dumps(p, ensure_ascii=i % 2 == 0) for i, p in enumerate(profiles))
           + "\r\n").encode()
    assert b"\\ud83c\\udf0a" in raw and "😀".encode() in raw  # an emoji escaped as a surrogate pair, one raw
    good = jsonl(tmp_path, "good.jsonl", raw)
    db = tmp_path / "p.db"
    done = aloe("personas", f"db={db}", f"import.profiles={good}", "personas.threshold=1.0")
    assert done.code == 0 and "Traceback" not in done.err, done.err[-2000:]
    conn = sqlite3.connect(db)
    stored = {t for (t,) in conn.execute("SELECT text FROM persona_items WHERE kind = 'profile' AND source = 'imported'")}
    conn.close()
    assert stored == set(profiles)


def test_a_labels_csv_with_a_nul_is_one_line(tmp_path: Path, server) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"case,turn,score\r\n0,1,4\r\n0,2,\x005\r\n")
    db = tmp_path / "never.db"
    done = aloe("evaluate", f"db={db}", *write_benchmark(tmp_path), f"evaluation.labels={labels}",
                f"evaluation.out_dir={tmp_path / 'out'}", *backend_args(server.base_url))
    one_line_error(done, f"{labels}:3:5:", "NUL")
    assert not db.exists()


CONFIG_MISTAKES = [
    (["generation.nonsense=1"], "generation.nonsense"),
    (["nonsense=1"], "nonsense"),
    (["backend=nonsense"], "backend"),
    (["generation=nonsense"], "generation"),
    (["generation.turns=-1"], "generation.turns"),
    (["generation.trees=-3"], "generation.trees"),
]


@pytest.mark.parametrize(("overrides", "key"), CONFIG_MISTAKES)
def test_config_mistakes_change_nothing(seeded: Path, server, overrides: list[str], key: str) -> None:
    before = file_state(seeded)
    done = aloe("generate", f"db={seeded}", *GEN, *backend_args(server.base_url), *overrides)
    one_line_error(done, key)
    assert file_state(seeded) == before


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_threshold_outside_0_1(tmp_path: Path, seeded: Path, value: str) -> None:
    before = file_state(seeded)
    good = write_benchmark(tmp_path)[0].split("=", 1)[1]
    done = aloe("personas", f"db={seeded}", f"personas.threshold={value}", f"import.profiles={good}")
    one_line_error(done, "personas.threshold", "[0, 1]")
    assert file_state(seeded) == before


def test_negative_turns_in_evaluate(tmp_path: Path, server) -> None:
    db = tmp_path / "never.db"
    done = aloe("evaluate", f"db={db}", *write_benchmark(tmp_path), "benchmark.turns=-2",
                *backend_args(server.base_url))
    one_line_error(done, "benchmark.turns")
    assert not db.exists()


@pytest.mark.parametrize("command", ["generate", "evaluate", "personas"])
def test_missing_api_key(tmp_path: Path, seeded: Path, server, command: str) -> None:
    before = file_state(seeded)
    args = [*backend_args(server.base_url), "backend.api_key_env=ALOE_NO_SUCH_KEY_VAR"]
    if command == "generate":
        args += GEN
    elif command == "evaluate":
        args += write_benchmark(tmp_path)
    else:
        args += ["personas.target_profiles=25"]
    done = aloe(command, f"db={seeded}", *args)
    one_line_error(done, "backend.api_key_env", "ALOE_NO_SUCH_KEY_VAR")
    assert file_state(seeded) == before


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_line_and_writes_nothing(tmp_path: Path, seeded: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    before = file_state(seeded)
    done = aloe("generate", f"db={seeded}", *GEN, *backend_args(url))
    one_line_error(done, url, "cannot connect")
    assert file_state(seeded) == before
    fresh = tmp_path / "fresh.db"
    done = aloe("evaluate", f"db={fresh}", *write_benchmark(tmp_path), "benchmark.turns=1",
                f"evaluation.out_dir={tmp_path / 'out'}", *backend_args(url))
    one_line_error(done, url, "cannot connect")
    assert not fresh.exists() and not (tmp_path / "out").exists()


def test_a_server_that_goes_away_mid_run_fails_the_trees_with_the_reason(tmp_path: Path, seeded: Path,
                                                                          clean_server) -> None:
    """Reachable at the start, cutting every call: a fault like any other."""
    clean_server.configure(fault_rate=1.0, fault_mix="disconnect", reset=True)
    try:
        done = aloe("generate", f"db={seeded}", *GEN, "log.format=json", "log.level=ERROR",
                    *backend_args(clean_server.base_url), "backend.max_retries=1")
    finally:
        clean_server.configure(fault_rate=0.0, reset=True)
    assert done.code == 3 and "Traceback" not in done.err, done.err
    summary = done.summary()
    assert (summary["trees_failed"], summary["trees_complete"], summary["nodes"]) == (2, 0, 0)
    conn = sqlite3.connect(seeded)
    errors = conn.execute("SELECT status, error FROM trees").fetchall()
    conn.close()
    assert len(errors) == 2 and all(s == "failed" and "connection error" in e for s, e in errors), errors


def test_database_that_is_not_sqlite(tmp_path: Path, server) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    before = file_state(db)
    done = aloe("generate", f"db={db}", *GEN, *backend_args(server.base_url))
    one_line_error(done, str(db), "not an SQLite database")
    assert file_state(db) == before


def test_database_from_a_newer_schema(seeded: Path, server) -> None:
    conn = sqlite3.connect(seeded)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = file_state(seeded)
    for args in (["generate", *GEN, *backend_args(server.base_url)], ["runs"], ["export", "export.dir=x"]):
        done = aloe(args[0], f"db={seeded}", *args[1:])
        one_line_error(done, str(seeded), "999")
        assert file_state(seeded) == before


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs of our own (needs root; skipped otherwise)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_read_only_database(tmpfs: Path, seeded: Path, server) -> None:
    """Read-only through the file system (a root user ignores file modes, a
    read-only mount it cannot)."""
    db = tmpfs / "ro.db"
    shutil.copy(seeded, db)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    before = file_state(db)
    done = aloe("generate", f"db={db}", *GEN, *backend_args(server.base_url))
    one_line_error(done, str(db))
    assert file_state(db) == before
    done = aloe("generate", f"db={tmpfs / 'new.db'}", *GEN, *backend_args(server.base_url))
    one_line_error(done, str(tmpfs / "new.db"))
    assert not (tmpfs / "new.db").exists()


def test_full_disk(tmpfs: Path, seeded: Path, server) -> None:
    """A disk already full: one line, database unchanged. A disk that fills up
    mid-run: one line, and the database is intact and resumable."""
    db = tmpfs / "full.db"
    shutil.copy(seeded, db)
    filler = tmpfs / "filler"
    with filler.open("wb", buffering=0) as fh:  # fill every byte left
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass
    before = file_state(db)
    done = aloe("generate", f"db={db}", *GEN, *backend_args(server.base_url))
    one_line_error(done, str(db))
    assert file_state(db) == before
    # room for the start of a run, not for all of it
    filler.unlink()
    many = tmpfs / "many.db"
    add_personas(many, 20)
    room = shutil.disk_usage(tmpfs).free - 96 * 1024
    filler.write_bytes(b"\0" * max(room, 0))
    done = aloe("generate", f"db={many}", "generation.trees=20", "generation.turns=2", "generation.progress=off",
                "log.level=ERROR", *backend_args(server.base_url))  # (the run's own log lines off)
    line = one_line_error(done, str(many), "disk is full")
    conn = sqlite3.connect(many)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    marked = conn.execute("SELECT count(*) FROM trees WHERE status = 'failed'").fetchone()[0]
    conn.close()
    # the line names the next step, and following it finishes the run: when the stopped
    # trees could still be marked failed (SQLite found room for that one small write), it
    # says retry_failed=true; when not, the same command continues them
    follow = ["retry_failed=true"] if "retry_failed=true" in line else []
    assert follow or not marked, line
    filler.unlink()
    done = aloe("generate", f"db={many}", "generation.trees=20", "generation.turns=2", "generation.progress=off",
                *follow, *backend_args(server.base_url))
    assert done.code == 0 and done.summary()["trees_complete"] == 20, done.err[-2000:]


def test_export_dir_under_a_file_is_one_line(tmp_path: Path) -> None:
    from tests.support.sample_db import write_sample

    db = tmp_path / "sample.db"
    write_sample(db)
    note = tmp_path / "notes.txt"
    note.write_text("a file, not a folder\n")
    done = aloe("export", f"db={db}", f"export.dir={note / 'data'}")
    one_line_error(done, "export.dir", "Not a directory")
    assert note.read_text() == "a file, not a folder\n"


def test_export_onto_a_full_disk_keeps_the_earlier_export(tmpfs: Path, tmp_path: Path) -> None:
    """The disk fills up while the new files are written: one line, no partial file
    left, and the earlier export in the folder is untouched (and still verifies)."""
    from aloesim.training import verify_export
    from tests.support.sample_db import write_sample, write_synthetic

    small, big = tmp_path / "small.db", tmp_path / "big.db"
    write_sample(small)
    write_synthetic(big, trees=400, nodes_per_tree=10, calls_per_node=0, cases=1)  # far more than 16 MB of export
    out = tmpfs / "data"
    first = aloe("export", f"db={small}", f"export.dir={out}")
    assert first.code == 0, first.err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done = aloe("export", f"db={big}", f"export.dir={out}")
    one_line_error(done, str(out), "No space left on device", "earlier export is kept")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial file, nothing replaced
    verify_export(out)
