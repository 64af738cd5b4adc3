"""Hostile replies (issue 12 items 1, 2, 4, 10; issue 13's truncation): the
latency server answers with the kinds of ``benchmarks/hostile_replies.py``
(a lone surrogate, usage of 10^30, ``choices`` a string or ``[null]``, no
``message``, content that is a number, HTML or zero bytes with status 200,
gzip garbage, JSON nested 100,000 deep, redirects to another origin, a 401
echoing the key masked, 2 MB replies, ``finish_reason: "length"``, ...), and
``aloe generate`` / ``aloe evaluate`` run against it as a user runs them.

Every kind ends as what it is: usable once made safe (stored with U+FFFD,
clamped counts, capped text), a retry, or a recorded failure of its tree or
case; never a traceback, a tree left ``running`` or a request without a
record."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aloesim.core import MAX_COUNT
from tests.support.reliability import (
    ROOT,
    SECRET,
    add_personas,
    aloe,
    backend_args,
    env,
    model_args,
    write_benchmark,
)

pytestmark = pytest.mark.integration

GEN = ["generation.progress=off", "log.format=json"]
# what a careful client makes of each kind (hostile_replies.HOSTILE_KINDS), grouped for the runs below
ACCEPTED = "surrogate,controls,usage_garbage,usage_huge,wrong_ctype,parts,length"
RETRIED = ("content_number,content_list,content_object,choices_string,choices_null,choices_empty,message_missing,"
           "not_json,json_array,json_scalar,gzip_garbage,zero_body,invalid_utf8,deep_json,error_200")


def check_run(db: Path, *, requests: int) -> sqlite3.Connection:
    """What holds after any run: intact database, every tree finished with a reason,
    every request the server saw is one recorded attempt."""
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    statuses = conn.execute("SELECT status, error FROM trees").fetchall()
    assert statuses and all(s == "complete" or (s == "failed" and e) for s, e in statuses), statuses
    attempts = conn.execute("SELECT COALESCE(SUM(attempts), 0) FROM llm_calls WHERE cached = 0").fetchone()[0]
    assert attempts == requests, (attempts, requests)
    return conn


def no_traceback(done) -> None:
    assert "Traceback" not in done.err and "Traceback" not in done.out, done.err[-3000:]


def test_generate_takes_every_odd_but_usable_reply_made_safe(tmp_path: Path, clean_server) -> None:
    """Lone surrogates, NUL and escapes, garbage or 10^30 usage, text/html, content parts,
    finish_reason length: stored safely, the run completes; none is lost."""
    clean_server.configure(fault_rate=0.6, fault_mix=ACCEPTED, reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 6)
    done = aloe("generate", f"db={db}", "generation.trees=6", "generation.turns=3", *GEN,
                *backend_args(clean_server.base_url))
    no_traceback(done)
    stats = clean_server.stats()
    assert all(stats["faults"][k] > 0 for k in ACCEPTED.split(",")), stats["faults"]
    conn = check_run(db, requests=stats["requests"])
    summary = done.summary()
    # structured output cut at max_tokens is retried (and may fail its tree); plain replies are kept
    assert done.code in (0, 3) and summary["trees_complete"] >= 4, (done.code, summary, done.err[-2000:])
    texts = " ".join(r for (r,) in conn.execute("SELECT response FROM llm_calls WHERE response IS NOT NULL"))
    assert "\ufffd" in texts  # the cut-off emoji, made valid
    assert "\x00" in texts and "\x1b[2J" in texts  # odd but valid text is kept as sent (12.6 prints it safely)
    counts = conn.execute("SELECT MAX(prompt_tokens), MIN(prompt_tokens), MAX(completion_tokens)"
                          " FROM llm_calls").fetchone()
    assert counts[0] == MAX_COUNT and counts[1] == 0 and counts[2] == MAX_COUNT  # clamped, not overflowed
    assert summary["prompt_tokens"] >= MAX_COUNT  # sums of clamped counts still fit
    # finish reasons: recorded for every answered call; length finishes counted in the summary
    reasons = dict(conn.execute("SELECT COALESCE(finish_reason, 'NULL'), COUNT(*) FROM llm_calls"
                                " WHERE error IS NULL GROUP BY 1").fetchall())
    assert reasons.get("NULL", 0) == 0 and reasons["length"] > 0 and reasons["stop"] > 0, reasons
    assert summary["truncated_calls"] == reasons["length"]
    assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE finish_reason = 'length' AND role = 'inducer'"
                        " AND error IS NULL").fetchone()[0] == 0  # structured output cut off is never kept
    nodes = conn.execute("SELECT user_message, preferred, rejected FROM nodes").fetchall()
    assert nodes and all(all(t.strip() for t in row) for row in nodes)


def test_replies_without_a_usable_answer_are_retried_then_fail_their_tree(tmp_path: Path, clean_server) -> None:
    """Content that is a number/list/object, choices a string/[null]/[], no message, HTML,
    a JSON list or null, gzip garbage, 0 bytes, invalid UTF-8, JSON 100,000 deep, an error
    in a 200: each is a retry, then a failure recorded against its tree; the run goes on."""
    clean_server.configure(fault_rate=0.5, fault_mix=RETRIED, reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 8)
    args = [f"db={db}", "generation.trees=8", "generation.turns=2", *GEN, *backend_args(clean_server.base_url)]
    done = aloe("generate", *args, "backend.max_retries=2")
    no_traceback(done)
    stats = clean_server.stats()
    assert sum(1 for k in RETRIED.split(",") if stats["faults"][k]) >= 12, {k: v for k, v in stats["faults"].items() if v}
    conn = check_run(db, requests=stats["requests"])
    summary = done.summary()
    failed = conn.execute("SELECT error FROM trees WHERE status = 'failed'").fetchall()
    assert done.code == (3 if failed else 0) and summary["trees_failed"] == len(failed)
    assert failed, "at 50% faults with two retries some tree fails"
    for (error,) in failed:
        assert "retries exhausted" in error and ("malformed response" in error or "connection error" in error)
    # every fault is one retry or one failed call
    retries, failures = conn.execute("SELECT COALESCE(SUM(attempts - 1), 0), COALESCE(SUM(error IS NOT NULL), 0)"
                                     " FROM llm_calls WHERE cached = 0").fetchone()
    assert stats["faults_total"] == retries + failures
    # the faults gone, the failed trees are picked up and finish
    clean_server.configure(fault_rate=0.0)
    again = aloe("generate", *args, "retry_failed=true")
    assert again.code == 0 and again.summary()["trees_complete"] == 8, again.err[-2000:]


class _Catcher(BaseHTTPRequestHandler):
    """The other origin a redirect points to: counts what reaches it."""

    def _any(self) -> None:
        self.server.hits.append((self.command, self.path))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"choices": [{"message": {"content": "stolen"}}]}')

    do_GET = do_POST = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def catcher() -> Iterator[tuple[str, list]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Catcher)
    httpd.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/stolen", httpd.hits  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("kind", ["redirect", "redirect_307"])
def test_a_redirect_is_a_recorded_error_and_the_prompt_never_leaves(tmp_path: Path, clean_server, catcher,
                                                                   kind: str) -> None:
    url, hits = catcher
    clean_server.configure(fault_rate=0.5, fault_mix=kind, redirect_to=url, reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 4)
    done = aloe("generate", f"db={db}", "generation.trees=4", "generation.turns=2", *GEN,
                *backend_args(clean_server.base_url))
    no_traceback(done)
    assert hits == []  # nothing was re-sent (nor turned into a GET) to the other origin
    stats = clean_server.stats()
    conn = check_run(db, requests=stats["requests"])
    status = 302 if kind == "redirect" else 307
    errors = [e for (e,) in conn.execute("SELECT error FROM llm_calls WHERE error IS NOT NULL")]
    assert len(errors) == stats["faults"][kind] > 0  # never retried: one redirect, one failed call
    port = url.split(":")[2].split("/")[0]
    assert all(f"HTTP {status} redirect to http://127.0.0.1:{port} not followed" in e for e in errors), errors
    assert conn.execute("SELECT COUNT(*) FROM llm_calls WHERE error IS NOT NULL AND"
                        " (attempts != 1 OR endpoint != ?)", (clean_server.base_url,)).fetchone()[0] == 0
    assert "stolen" not in " ".join(r or "" for (r,) in conn.execute("SELECT response FROM llm_calls"))
    failed = conn.execute("SELECT error FROM trees WHERE status = 'failed'").fetchall()
    assert failed and all(f"HTTP {status} redirect" in e for (e,) in failed)
    assert done.code == 3


def test_a_masked_echo_of_the_key_is_redacted_everywhere(tmp_path: Path, clean_server) -> None:
    """A 401 quoting ``sk-ALOE-T************************1234`` and ``...T-1234``:
    no recognisable fragment reaches stdout, stderr, logs or the database."""
    clean_server.configure(fault_rate=1.0, fault_mix="key_echo", reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 2)
    done = aloe("generate", f"db={db}", "generation.trees=2", "generation.turns=1", "generation.progress=log",
                "log.level=DEBUG", *backend_args(clean_server.base_url))
    no_traceback(done)
    assert done.code == 3
    masked = f"{SECRET[:8]}{'*' * 24}{SECRET[-4:]}"
    fragments = [masked, SECRET[:8], SECRET[-6:], "TEST-SECRET", "ALOE-TEST"]
    conn = sqlite3.connect(db)
    stored = [str(v) for table in ("llm_calls", "trees", "events", "runs")
              for row in conn.execute(f"SELECT * FROM {table}") for v in row if v is not None]
    errors = [e for (e,) in conn.execute("SELECT error FROM llm_calls WHERE error IS NOT NULL")]
    assert errors and all("HTTP 401" in e and "[redacted]" in e for e in errors), errors
    for text in (done.out, done.err, *stored, (tmp_path / "g.db").read_bytes().decode("latin-1")):
        for fragment in fragments:
            assert fragment not in text, fragment


def test_a_2mb_reply_is_capped_and_marked(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.5, fault_mix="huge", reset=True)
    db = tmp_path / "g.db"
    add_personas(db, 3)
    done = aloe("generate", f"db={db}", "generation.trees=3", "generation.turns=2", *GEN,
                *backend_args(clean_server.base_url), "backend.max_reply_chars=4000")
    no_traceback(done)
    conn = check_run(db, requests=clean_server.stats()["requests"])
    longest = conn.execute("SELECT MAX(LENGTH(response)) FROM llm_calls").fetchone()[0]
    assert longest <= 4000 + 200  # (a structured reply is re-serialized JSON: never past the cap's size)
    capped = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE LENGTH(response) = 4000"
                          " AND finish_reason = 'length'").fetchone()[0]
    assert capped > 0 and done.summary()["truncated_calls"] >= capped
    assert conn.execute("SELECT MAX(MAX(LENGTH(preferred)), MAX(LENGTH(rejected)), MAX(LENGTH(user_message)))"
                        " FROM nodes").fetchone()[0] <= 4000


def test_evaluate_takes_hostile_replies_without_a_traceback(tmp_path: Path, clean_server) -> None:
    clean_server.configure(fault_rate=0.4, fault_mix=f"{ACCEPTED},{RETRIED}", reset=True)
    db = tmp_path / "e.db"
    url = clean_server.base_url
    done = aloe("evaluate", f"db={db}", *write_benchmark(tmp_path), "benchmark.turns=3", "log.format=json",
                f"evaluation.out_dir={tmp_path / 'report'}", *backend_args(url), *model_args(url))
    no_traceback(done)
    summary = done.summary()
    assert done.code == (3 if summary["failed_cases"] else 0)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cases = conn.execute("SELECT status, error FROM eval_cases").fetchall()
    assert len(cases) == 4 and all(s == "complete" or (s == "failed" and e) for s, e in cases), cases
    attempts = conn.execute("SELECT COALESCE(SUM(attempts), 0) FROM llm_calls WHERE cached = 0").fetchone()[0]
    assert attempts == clean_server.stats()["requests"]
    length = conn.execute("SELECT COUNT(*) FROM llm_calls WHERE finish_reason = 'length'").fetchone()[0]
    assert summary["truncated_calls"] == length
    run = json.loads(aloe("runs", f"db={db}", "format=json").out)[0]
    assert run["status"] in ("complete", "failed")


BUGGY = """
import sys
from aloesim.orchestration import _generate
original, seen = _generate.TreeEnvironment._commit, []
async def commit(self, part):
    seen.append(part)
    if len(seen) == 3:
        raise KeyError("a bug in the environment")
    return await original(self, part)
_generate.TreeEnvironment._commit = commit
from aloesim.orchestration.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_bug_that_stops_the_run_leaves_it_marked_with_the_error_named(tmp_path: Path, clean_server) -> None:
    """A bug outside any role (here: in the tree environment) ends the run with its
    traceback, but never with trees left ``running``: the run and its unfinished
    trees are marked failed, naming the error; retry_failed=true finishes them."""
    import subprocess
    import sys


    db = tmp_path / "g.db"
    add_personas(db, 4)
    args = ["generate", f"db={db}", "generation.trees=4", "generation.turns=2", *GEN,
            *backend_args(clean_server.base_url)]
    proc = subprocess.run([sys.executable, "-c", BUGGY, *args], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 1 and "KeyError: 'a bug in the environment'" in proc.stderr, proc.stderr[-3000:]
    conn = sqlite3.connect(db)
    run_status, stats = conn.execute("SELECT status, stats FROM runs").fetchone()
    assert run_status == "failed" and "KeyError" in json.loads(stats)["error"]
    trees = conn.execute("SELECT status, error FROM trees").fetchall()
    assert {s for s, _ in trees} <= {"complete", "failed"}
    assert any(s == "failed" and e == "run stopped: KeyError: 'a bug in the environment'" for s, e in trees)
    conn.close()
    again = aloe(*args, "retry_failed=true")
    assert again.code == 0 and again.summary()["trees_complete"] == 4, again.err[-2000:]


UNCLAMPED = """
import sys
from aloesim.agents.gateway import _record, _reply
_record.safe_count = _reply.safe_count = lambda value, maximum=0: value  # as before counts were made safe
from aloesim.orchestration.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_a_queued_write_that_fails_fails_the_run_loudly(tmp_path: Path, clean_server, command: str) -> None:
    """The class behind 'usage 10^30 left no row': with the clamping taken out again
    (so the call record's INSERT overflows), the lost record is not swallowed: the
    command ends with one line naming it, exit 1, and the run is marked failed."""
    import subprocess
    import sys


    clean_server.configure(fault_rate=0.3, fault_mix="usage_huge", reset=True)
    db = tmp_path / "g.db"
    url = clean_server.base_url
    if command == "generate":
        add_personas(db, 3)
        args = ["generate", f"db={db}", "generation.trees=3", "generation.turns=2", *GEN]
    else:
        args = ["evaluate", f"db={db}", *write_benchmark(tmp_path), "benchmark.turns=2", "log.format=json",
                f"evaluation.out_dir={tmp_path / 'report'}", *model_args(url)]
    proc = subprocess.run([sys.executable, "-c", UNCLAMPED, *args, *backend_args(url), "log.level=ERROR"],
                          env=env(), cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"aloe {command}: database error: {db}: a queued write failed (the record of a ")
    assert "Python int too large to convert to SQLite INTEGER" in lines[0]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM runs").fetchone()[0] in ("failed", "interrupted")
    assert conn.execute("SELECT COUNT(*) FROM trees WHERE status IN ('pending', 'running')").fetchone()[0] == 0
    conn.close()
