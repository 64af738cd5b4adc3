"""Secrets (issue 7): with a recognizable API key in the environment variable
the config names, run generate and evaluate at DEBUG level (with faults,
calls that fail for good, and a server that answers 401 quoting the key back
the way real APIs do), then look for the key everywhere: stdout and stderr,
every file the commands wrote (the database and its WAL byte for byte,
reports, exports, any Hydra output folder in the working directory), every
table and column of the database, the saved run config. It appears nowhere."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.reliability import (
    ALOE,
    KEY_VAR,
    ROOT,
    SECRET,
    add_personas,
    backend_args,
    env,
    model_args,
    write_benchmark,
)

pytestmark = pytest.mark.integration

PIECES = [SECRET.encode(), b"ALOE-TEST-SECRET", b"TEST-SECRET-1234"]


class _Rejecting(BaseHTTPRequestHandler):
    """Answers every request 401, quoting the bearer token it was sent."""

    def _reject(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        self.server.seen.append(token)  # type: ignore[attr-defined]
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {token}.",
                                     "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reject

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rejecting_url() -> Iterator[tuple[str, list[str]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", httpd.seen  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(cwd: Path, *args: str) -> tuple[int, bytes]:
    proc = subprocess.run([*ALOE, *args, "log.level=DEBUG", "log.format=json"], env=env(), cwd=cwd,
                          capture_output=True, timeout=240, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def leaks(data: bytes) -> list[bytes]:
    return [p for p in PIECES if p in data]


def test_the_api_key_appears_nowhere(tmp_path: Path, clean_server, rejecting_url) -> None:
    url = clean_server.base_url
    bad_url, seen = rejecting_url
    work = tmp_path / "cwd"  # the commands' working directory (Hydra output folders would land here)
    work.mkdir()
    db = tmp_path / "secrets.db"
    add_personas(db, 4)
    outputs: list[tuple[str, int, bytes]] = []

    # generate and evaluate with faults (retried), then with every call failing for good
    clean_server.configure(fault_rate=0.3, fault_mix="all", reset=True)
    gen = ["generate", f"db={db}", "generation.trees=2", "generation.turns=2", "generation.progress=log"]
    outputs.append(("generate", *run(work, *gen, *backend_args(url))))
    bench = write_benchmark(tmp_path)
    ev = ["evaluate", f"db={db}", *bench, "benchmark.turns=2", f"evaluation.out_dir={tmp_path / 'report'}"]
    outputs.append(("evaluate", *run(work, *ev, *backend_args(url), *model_args(url))))
    clean_server.configure(fault_rate=1.0, fault_mix="500,malformed")
    outputs.append(("generate failing", *run(work, *gen, "generation.trees=4", *backend_args(url),
                                              "backend.max_retries=1")))
    # a 401 whose message quotes the key back
    outputs.append(("generate 401", *run(work, *gen, "generation.trees=3", "seed=9", *backend_args(bad_url),
                                          "backend.max_retries=0")))
    outputs.append(("evaluate 401", *run(work, *ev, "benchmark.turns=1", *backend_args(bad_url),
                                          *model_args(bad_url), "backend.max_retries=0", "model.max_retries=0")))
    export = ["export", f"db={db}", f"export.dir={tmp_path / 'export'}"]
    outputs.append(("export", *run(work, *export)))
    outputs.append(("runs", *run(work, "runs", f"db={db}", "format=json")))
    outputs.append(("show", *run(work, "show", f"db={db}")))

    assert SECRET in seen  # the key was really sent (so the search below can find it if it leaked)
    codes = {name: code for name, code, _ in outputs}
    assert codes["generate"] == 0 and codes["evaluate"] == 0 and codes["generate failing"] == 3, codes
    assert codes["generate 401"] != 0, codes
    all_out = b"".join(out for _, _, out in outputs)
    assert b"401" in all_out and b"DEBUG" in all_out.upper()  # the failures and debug lines were printed
    for name, _, out in outputs:
        assert leaks(out) == [], (name, out.decode(errors="replace")[-2000:])
    assert "Traceback" not in all_out.decode(errors="replace")

    # every file written, byte for byte (database, WAL, reports, exports, Hydra folders)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "secrets.db" for p in files) and any(p.suffix == ".jsonl" for p in files)
    for path in files:
        assert leaks(path.read_bytes()) == [], path
    # and every table and column, decoded (the saved run configs included)
    conn = sqlite3.connect(db)
    configs = [c for (c,) in conn.execute("SELECT config FROM runs")]
    assert configs and all(KEY_VAR in c for c in configs)  # the variable's NAME is kept, never its value
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    checked = 0
    for table in tables:
        for row in conn.execute(f'SELECT * FROM "{table}"'):  # names from sqlite_master, not user input
            for value in row:
                if value is not None:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    assert leaks(raw) == [], (table, raw[:300])
                    checked += 1
    errors = [e for (e,) in conn.execute("SELECT error FROM llm_calls WHERE error LIKE '%401%'")]
    conn.close()
    assert checked > 1000 and errors  # the 401 was recorded, without the key
    assert not (ROOT / "outputs").exists() or not any((ROOT / "outputs").rglob("*secrets*"))
