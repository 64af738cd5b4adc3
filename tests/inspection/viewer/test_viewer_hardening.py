"""The viewer against hostile requests and hostile data (issue 12.5, 12.10):
Host headers other than loopback or the configured host get 400 (raw HTTP
over a socket), ids past 2^63 / negative / not numbers get 404, fuzzed query
parameters never give 5xx, and a 2 MB reply renders capped with the full
text one link away."""

from __future__ import annotations

import itertools
import json
import random
import socket
import sqlite3
from urllib.parse import quote, urlsplit

import pytest
from viewer_helpers import fetch

from aloesim.inspection.viewer import create_app, serve_in_thread
from aloesim.inspection.viewer._filters import MAX_TEXT
from aloesim.inspection.viewer._guards import host_name
from tests.support.sample_db import write_sample


def raw_get(base: str, path: str, host_lines: list[str], version: str = "HTTP/1.1") -> tuple[int, bytes]:
    """Send a GET with exactly these Host header lines; the status and body."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = f"GET {path} {version}\r\n" + "".join(f"{h}\r\n" for h in host_lines)
        sock.sendall((head + "Connection: close\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "host_lines",
    [
        ["Host: evil.example"],
        ["Host: evil.example:8765"],
        ["Host: 127.0.0.1.evil.example"],
        ["Host: localhost.evil.example:80"],
        ["Host: 127.0.0.2"],  # loopback network, but not a name the viewer answers to
        ["Host: [::1].evil.example"],
        ["Host: 127.0.0.1:abc"],
        ["Host: 127.0.0.1:80:80"],
        ["Host: evil.example@127.0.0.1"],
        ["Host: "],
        [],  # no Host at all
        ["Host: 127.0.0.1", "Host: evil.example"],  # two Host headers
    ],
)
def test_foreign_host_headers_get_400(viewer_url, host_lines):
    status, body = raw_get(viewer_url, "/", host_lines)
    assert status == 400, (host_lines, status)
    assert b"<table" not in body  # no page content at all


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_missing_host_is_400_in_either_http_version(viewer_url, version):
    assert raw_get(viewer_url, "/", [], version)[0] == 400


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]", "[::1]:8765"]
)
def test_loopback_host_headers_are_served(viewer_url, sample, host):
    status, body = raw_get(viewer_url, f"/runs/{sample.ids['run1']}", [f"Host: {host}"])
    assert status == 200 and b"Run #" in body


def test_the_configured_host_is_served_too(sample):
    with serve_in_thread(create_app(sample.path, host="viewer.lan", warm_runs=0)) as url:
        assert raw_get(url, "/", ["Host: viewer.lan:8765"])[0] == 200
        assert raw_get(url, "/", ["Host: 127.0.0.1"])[0] == 200
        assert raw_get(url, "/", ["Host: other.lan"])[0] == 400
    with serve_in_thread(create_app(sample.path, host="fd00::5", warm_runs=0)) as url:
        assert raw_get(url, "/", ["Host: [fd00::5]:80"])[0] == 200


def test_host_name_parsing():
    assert host_name("LocalHost:8765") == "localhost"
    assert host_name("[::1]:1") == "[::1]"
    assert host_name("[::1") is None
    assert host_name("a:1234567") is None


BIG = str(2**63)
IDS = [BIG, str(2**64 + 5), "9" * 40, "9" * 5000, "-1", "0x10", "1e3", "abc", "%00", "1.0", " 1"]


@pytest.mark.parametrize(
    "template",
    ["/runs/{}", "/runs/{}/calls", "/trees/{}", "/trees/{}/json", "/evaluations/{}", "/cases/{}", "/cases/{}/json"],
)
@pytest.mark.parametrize("ident", IDS)
def test_ids_past_2_63_negative_or_not_numbers_are_404(viewer_url, template, ident):
    page = fetch(viewer_url + template.format(quote(ident)))
    assert page.status == 404, (template, ident, page.status)


FUZZ = ["", "0", "-1", "1", "2", BIG, "9" * 5000, "abc", "1e9", "１", "\x00", "%", "'", '"; DROP TABLE runs; --',
        "<script>", "\u202e", "\x1b[2J", "x" * 10_000, "complete", "failed", "p", "pr", "rrrr", "[]", "{}"]


def test_fuzzed_query_parameters_never_give_5xx(viewer_url, sample):
    """Every page with a bounded random sample of hostile values for page,
    epage, q, status, branch and offset (seeded: a failure replays)."""
    rng = random.Random(1263)
    paths = [
        "/",
        f"/runs/{sample.ids['run1']}",
        f"/runs/{sample.ids['run1']}/calls",
        f"/trees/{sample.ids['full_tree']}",
        f"/evaluations/{sample.ids['evaluation']}",
        f"/cases/{sample.ids['case']}",
    ]
    names = ["page", "epage", "q", "status", "branch", "offset"]
    seen = set()
    for path, (a, b) in itertools.product(paths, itertools.combinations(names, 2)):
        query = f"{a}={quote(rng.choice(FUZZ))}&{b}={quote(rng.choice(FUZZ))}"
        page = fetch(f"{viewer_url}{path}?{query}")
        assert page.status < 500, (path, query, page.status, page.body[:300])
        seen.add(page.status)
    for path, name, value in itertools.product(paths[:2], names, FUZZ):  # every value alone on the lists
        page = fetch(f"{viewer_url}{path}?{name}={quote(value)}")
        assert page.status in (200, 400), (path, name, value, page.status)
        seen.add(page.status)
    assert seen >= {200, 400}


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """The sample database with a 2 MB reply, a 2 MB prompt and a 1 MB persona."""
    path = tmp_path_factory.mktemp("huge") / "huge.db"
    ids = write_sample(path)
    conn = sqlite3.connect(path)
    reply = "R" * 2_000_000 + "END-OF-REPLY"
    with conn:
        node = conn.execute("SELECT min(id) FROM nodes WHERE tree_id = ?", (ids["tree"],)).fetchone()[0]
        conn.execute("UPDATE nodes SET preferred = ? WHERE id = ?", (reply, node))
        call = conn.execute("SELECT min(id) FROM llm_calls WHERE tree_id = ?", (ids["tree"],)).fetchone()[0]
        conn.execute("UPDATE llm_calls SET response = ?, request = ? WHERE id = ?",
                     (reply, json.dumps({"messages": [{"role": "user", "content": "P" * 2_000_000}]}), call))
        conn.execute("UPDATE persona_items SET text = ? WHERE id = "
                     "(SELECT profile_id FROM personas JOIN trees ON trees.persona_id = personas.id WHERE trees.id = ?)",
                     ("A" * 1_000_000, ids["tree"]))
        conn.execute("UPDATE eval_turns SET reply = ? WHERE case_id = ?", (reply, ids["case"]))
    conn.close()
    with serve_in_thread(create_app(path, warm_runs=0)) as url:
        yield url, ids


def test_a_2mb_reply_renders_capped_with_the_full_text_linked(huge):
    url, ids = huge
    page = fetch(f"{url}/trees/{ids['tree']}")
    assert page.status == 200
    assert len(page.body) < 12 * MAX_TEXT + 200_000  # not the 7 MB of text in the tree
    assert "END-OF-REPLY" not in page.body
    assert "more characters not shown" in page.body
    link = f"/trees/{ids['tree']}/json"
    assert f'href="{link}"' in page.body
    full = fetch(url + link)
    assert full.status == 200 and full.headers["content-type"].startswith("application/json")
    data = json.loads(full.body)
    assert any(n["preferred"].endswith("END-OF-REPLY") and len(n["preferred"]) == 2_000_012 for n in data["nodes"])
    assert data["persona"]["profile"] == "A" * 1_000_000


def test_a_2mb_case_reply_renders_capped(huge):
    url, ids = huge
    page = fetch(f"{url}/cases/{ids['case']}")
    assert page.status == 200 and len(page.body) < 200_000
    assert "END-OF-REPLY" not in page.body and f'href="/cases/{ids["case"]}/json"' in page.body
    assert "END-OF-REPLY" in fetch(f"{url}/cases/{ids['case']}/json").body
