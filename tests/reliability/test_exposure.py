"""Exposure (issue 7): ``aloe view`` over a database a real run wrote, with
hostile text in the persona and in a model reply, listens on 127.0.0.1 only
(the listening socket is read from /proc/net/tcp), answers every write
method with 405, escapes the stored text, and leaves the database as it was.
(The viewer's own tests cover more pages and a real browser; this is the
issue-7 check over the whole path: run -> database -> viewer.)"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.reliability import ALOE, ROOT, add_personas, aloe, backend_args, env, file_state

pytestmark = pytest.mark.integration

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def listening(port: int) -> list[str]:
    """Local addresses with a socket in LISTEN state on ``port`` (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:
                if len(addr) == 8:
                    found.append(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    found.append(addr)
    return found


def request(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"x=1" if method in ("POST", "PUT", "PATCH") else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_viewer_is_local_read_only_and_escapes(tmp_path: Path, clean_server) -> None:
    db = tmp_path / "view.db"
    add_personas(db, 1)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE persona_items SET text = text || ? WHERE kind = 'profile'", (HOSTILE,))
    conn.commit()
    conn.close()
    done = aloe("generate", f"db={db}", "generation.trees=1", "generation.turns=2", "generation.progress=off",
                *backend_args(clean_server.base_url))
    assert done.code == 0, done.err
    conn = sqlite3.connect(db)  # a reply with markup too
    conn.execute("UPDATE nodes SET preferred = ? WHERE turn = 1", (HOSTILE,))
    conn.commit()
    (tree_id, run_id) = conn.execute("SELECT id, run_id FROM trees").fetchone()
    conn.close()
    before = file_state(db)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*ALOE, "view", f"db={db}", f"view.port={port}"], env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()  # type: ignore
            time.sleep(0.1)
        assert listening(port) == ["127.0.0.1"]
        base = f"http://127.0.0.1:{port}"
        pages = {path: request(base + path) for path in ("/", f"/runs/{run_id}", f"/trees/{tree_id}",
                                                           f"/runs/{run_id}/calls")}
        for path, (status, body) in pages.items():
            assert status == 200, path
            assert "<script>" not in body and "<img src=x" not in body, path
        tree_page = pages[f"/trees/{tree_id}"][1]
        assert "&lt;script&gt;" in tree_page and "&lt;img src=x onerror=alert(1)&gt;" in tree_page
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/", f"/trees/{tree_id}", f"/runs/{run_id}"):
                assert request(base + path, method)[0] == 405, (method, path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert file_state(db) == before  # read-only: nothing the viewer did changed the database
