"""The viewer over real HTTP (uvicorn in a thread, stdlib client): pages,
search, pagination, escaping, read-only behaviour, errors."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from viewer_helpers import fetch

from aloesim.core.errors import ConfigError, StoreError
from aloesim.inspection.viewer import create_app, serve_in_thread
from aloesim.orchestration import compose_config
from aloesim.orchestration.commands import view as view_cmd
from tests.support.sample_db import write_sample, write_synthetic


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def links(html: str) -> list[str]:
    p = Links()
    p.feed(html)
    return p.hrefs


def test_index_lists_runs_with_config_differences_and_evaluations(viewer_url, sample):
    page = fetch(viewer_url + "/")
    assert page.status == 200
    hrefs = links(page.body)
    assert f"/runs/{sample.ids['run1']}" in hrefs and f"/runs/{sample.ids['run2']}" in hrefs
    assert f"/evaluations/{sample.ids['evaluation']}" in hrefs
    # run 2 differs from run 1 in seed, generation.mode, generation.turns, generation.trees
    diff_cell = page.body.split(f"run #{sample.ids['run2']}</a>")[1].split("</tr>")[0]
    for key in ("seed", "generation.mode", "generation.turns", "generation.trees"):
        assert f"<code>{key}</code>" in diff_cell
    assert "backend.kind" not in diff_cell
    assert "<del>path</del> → <ins>full</ins>" in diff_cell
    assert "base &lt;i&gt;model&lt;/i&gt;" in page.body
    # one AL(k) chart comparing the evaluations, each line linked to its page
    chart = page.body.split('<svg class="al-chart"')[1].split("</svg>")[0]
    assert chart.count('<g class="series') == 2
    assert chart.count('class="al-point"') == 3 + 2
    legend = page.body.split('<ul class="legend">')[1].split("</ul>")[0]
    assert (
        f'href="/evaluations/{sample.ids["evaluation2"]}"' in legend
        and "#1 base &lt;i&gt;model&lt;/i&gt;" in legend
    )


def test_run_page_summary_and_trees(viewer_url, sample):
    page = fetch(f"{viewer_url}/runs/{sample.ids['run1']}")
    assert page.status == 200
    assert f"/trees/{sample.ids['tree']}" in links(page.body)
    assert f"/trees/{sample.ids['failed_tree']}" in links(page.body)
    assert "93.50s" in page.body and "bad JSON" in page.body
    assert "&lt;script&gt;window.pwned = true&lt;/script&gt;" in page.body
    assert "<script>" not in page.body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=Lyon", {"tree"}),
        ("q=runs+marathons", {"failed_tree"}),
        ("q=curious", {"tree"}),
        ("q=%25", set()),
        ("q=_", set()),
        ("q=%27%3B+DROP+TABLE+trees%3B--", set()),
        ("status=failed", {"failed_tree"}),
        ("q=Oslo&status=complete", set()),
        ("", {"tree", "failed_tree"}),
    ],
)
def test_run_page_search_over_persona_text(viewer_url, sample, query, expected):
    page = fetch(f"{viewer_url}/runs/{sample.ids['run1']}?{query}")
    assert page.status == 200
    found = {int(m) for m in re.findall(r'class="tree-link" href="/trees/(\d+)"', page.body)}
    assert found == {sample.ids[k] for k in expected}


def test_tree_page(viewer_url, sample):
    page = fetch(f"{viewer_url}/trees/{sample.ids['tree']}")
    assert page.status == 200
    body = page.body
    assert body.count('<section class="turn') == 3
    assert [int(t) for t in re.findall(r'data-turn="(\d)"', body)] == [1, 2, 3]
    # the path: three nodes and three edges on it (two between nodes, one to the final reply)
    svg = body.split('<svg class="tree-path"')[1].split("</svg>")[0]
    assert svg.count('class="node on-path"') == 3
    assert len(re.findall(r'class="edge continued on-path"', svg)) == 3
    assert "stub-stopped" in svg
    # markup in persona, messages and replies is text
    assert "<script>" not in body and "<img" not in body and "<b>teacher" not in body
    assert "&lt;script&gt;window.pwned = true&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=" in body
    # persona evolution and raw calls
    assert "<ins> living in Lyon</ins>" in body
    assert body.count('<details class="call"') == 14  # 13 node calls + 1 without a node
    assert "timeout after 120s" in body and "Start turn 2" in body


def test_evaluation_and_case_pages(viewer_url, sample):
    ev = fetch(f"{viewer_url}/evaluations/{sample.ids['evaluation']}")
    assert ev.status == 200
    chart = ev.body.split('<svg class="al-chart"')[1].split("</svg>")[0]
    assert chart.count('class="al-point"') == 3 and "AL(3) = 4.50" in chart
    assert "1.000" in ev.body  # IR
    case_links = re.findall(r'class="case-link" href="(/cases/\d+)"', ev.body)
    assert len(case_links) == 2
    case = fetch(viewer_url + case_links[0])
    assert case.status == 200
    assert case.body.count('<section class="turn') == 3
    assert (
        "score 2" in case.body
        and "Case 0 reply 1 &lt;script&gt;" in case.body
        and "<script>" not in case.body
    )


@pytest.mark.parametrize("path", ["/runs/999", "/trees/999", "/evaluations/999", "/cases/999", "/nope"])
def test_unknown_pages_are_404(viewer_url, path):
    assert fetch(viewer_url + path).status == 404


@pytest.mark.parametrize("path", ["/runs/1?page=abc", "/runs/1?page=0", "/runs/1?status=weird"])
def test_bad_query_parameters_are_400(viewer_url, path):
    page = fetch(viewer_url + path)
    assert page.status == 400 and "<h1>400</h1>" in page.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/", "/runs/1", "/trees/1", "/static/viewer.css", "/nope"])
def test_only_get_and_head(viewer_url, method, path):
    page = fetch(viewer_url + path, method)
    assert page.status == 405 and page.headers["allow"] == "GET, HEAD"


def test_head_and_safety_headers(viewer_url):
    head = fetch(viewer_url + "/trees/1", "HEAD")
    assert head.status == 200 and head.body == ""
    csp = fetch(viewer_url + "/").headers["content-security-policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp


def test_pagination_follows_to_the_last_page(small_pages_url, sample):
    page = fetch(f"{small_pages_url}/runs/{sample.ids['run1']}")
    assert "trees page 1 of 2" in page.body
    assert re.findall(r'class="tree-link" href="/trees/(\d+)"', page.body) == [str(sample.ids["tree"])]
    nxt = re.search(r'href="(\?page=2)" rel="next"', page.body).group(1)
    page2 = fetch(f"{small_pages_url}/runs/{sample.ids['run1']}{nxt}")
    assert re.findall(r'class="tree-link" href="/trees/(\d+)"', page2.body) == [
        str(sample.ids["failed_tree"])
    ]
    # past the end: the last page; search keeps its query in pager links
    assert "trees page 2 of 2" in fetch(f"{small_pages_url}/runs/{sample.ids['run1']}?page=99").body
    index = fetch(small_pages_url + "/")
    assert "runs page 1 of 2" in index.body


def test_every_link_from_the_index_reaches_a_page(small_pages_url, sample):
    seen: dict[str, int] = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        page = fetch(small_pages_url + path)
        seen[path] = page.status
        for href in links(page.body):
            url = urlsplit(urljoin(small_pages_url + path, href))
            if url.netloc != urlsplit(small_pages_url).netloc or not url.path:
                continue
            target = url.path + (f"?{url.query}" if url.query else "")
            if target not in seen:
                todo.append(target)
    assert all(code == 200 for code in seen.values()), {p: c for p, c in seen.items() if c != 200}
    assert f"/runs/{sample.ids['run1']}/calls" in seen
    for key, prefix in (
        ("run1", "runs"),
        ("run2", "runs"),
        ("tree", "trees"),
        ("failed_tree", "trees"),
        ("full_tree", "trees"),
        ("evaluation", "evaluations"),
        ("case", "cases"),
    ):
        assert f"/{prefix}/{sample.ids[key]}" in seen
    assert sum(p.startswith("/cases/") for p in seen) == 3
    assert f"/evaluations/{sample.ids['evaluation2']}" in seen


def test_large_database_pages(tmp_path):
    db = tmp_path / "big.db"
    info = write_synthetic(db, trees=600, nodes_per_tree=5, calls_per_node=2, cases=12)
    with serve_in_thread(create_app(db)) as url:
        run = fetch(f"{url}/runs/{info['run']}?page=12")
        assert "trees page 12 of 12" in run.body
        assert len(re.findall(r'class="tree-link"', run.body)) == 50
        tree = fetch(f"{url}/trees/600")
        assert tree.body.count('<section class="turn') == 5 and tree.body.count('class="node on-path"') == 5
        ev = fetch(f"{url}/evaluations/{info['evaluation']}")
        assert ev.body.count('class="al-point"') == 10


def test_create_app_refuses_unusable_databases(tmp_path):
    with pytest.raises(StoreError):
        create_app(tmp_path / "missing.db")
    bad = tmp_path / "bad.db"
    bad.write_text("not a database at all, just text")
    with pytest.raises(StoreError):
        create_app(bad)


def test_view_options_validation(sample):
    good = view_cmd.options(compose_config("view", [f"db={sample.path}"]))
    assert good == {"host": "127.0.0.1", "port": 8765, "page_size": 50, "threads": 8, "warm_runs": 3}
    for override, key in (
        ("view.port=70000", "view.port"),
        ("view.port=abc", "view.port"),
        ("view.page_size=0", "view.page_size"),
        ("view.host=''", "view.host"),
    ):
        with pytest.raises(ConfigError) as err:
            view_cmd.options(compose_config("view", [f"db={sample.path}", override]))
        assert err.value.key == key
    assert (
        view_cmd.is_loopback("127.0.0.1")
        and view_cmd.is_loopback("::1")
        and view_cmd.is_loopback("localhost")
    )
    assert not view_cmd.is_loopback("0.0.0.0") and not view_cmd.is_loopback("192.168.1.4")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {host}:{port}")


@pytest.mark.integration
@pytest.mark.parametrize("host", [None, "0.0.0.0"])
def test_aloe_view_serves_on_loopback_and_warns_otherwise(sample, host):
    """``aloe view db=PATH view.port=N`` in a subprocess: 127.0.0.1 by default;
    any other host only when asked, with a warning."""
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "aloesim.orchestration.cli",
        "view",
        f"db={sample.path}",
        f"view.port={port}",
    ]
    if host:
        args.append(f"view.host={host}")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(port)
        page = fetch(f"http://127.0.0.1:{port}/")
        assert page.status == 200 and f"/runs/{sample.ids['run1']}" in page.body
        ss = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
        local = [line.split()[3] for line in ss.splitlines() if line.strip()]
        assert local == [f"{host or '127.0.0.1'}:{port}"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert ("WARNING" in err) == (host == "0.0.0.0")
    assert f":{port}/" in err


def test_run_calls_page(viewer_url, sample):
    page = fetch(f"{viewer_url}/runs/{sample.ids['run1']}/calls")
    assert page.status == 200
    assert "15 calls" in page.body and "2 failed" in page.body
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"n\">(\d+)</td>", page.body)
    assert dict(rows) == {"inducer": "4", "judge": "1", "preferred": "3", "rejected": "3", "user": "4"}
    assert f'href="/trees/{sample.ids["tree"]}#call-14"' in page.body
    assert "timeout after 120s" in page.body
    run2 = fetch(f"{viewer_url}/runs/{sample.ids['run2']}/calls")
    assert run2.status == 200 and "No LLM calls recorded" in run2.body
    assert fetch(f"{viewer_url}/runs/999/calls").status == 404


def test_run_calls_cache_follows_new_calls(tmp_path):
    from aloesim.environment.store import connect

    db = tmp_path / "live.db"
    ids = write_sample(db)
    app = create_app(db, warm_runs=2)
    with serve_in_thread(app) as url:
        assert "15 calls" in fetch(f"{url}/runs/{ids['run1']}/calls").body
        assert "15 calls" in fetch(f"{url}/runs/{ids['run1']}/calls").body  # cached
        conn = connect(db)  # a writer records one more (failed) call meanwhile
        conn.execute(
            "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, request, error, created_at)"
            " VALUES (?, 'judge', 'http://x', 'm', ?, '{}', 'boom', 0)",
            (ids["run1"], ids["tree"]),
        )
        conn.close()
        body = fetch(f"{url}/runs/{ids['run1']}/calls").body
        assert "16 calls" in body and "3 failed" in body and "boom" in body


def test_view_listen_reports_a_taken_port():
    from aloesim.core.errors import ServerError

    sock = view_cmd.listen("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
        with pytest.raises(ServerError) as err:
            view_cmd.listen("127.0.0.1", sock.getsockname()[1])
        assert "cannot listen on 127.0.0.1:" in str(err.value)
    finally:
        sock.close()


def test_full_tree_path_follows_the_chosen_branch(viewer_url, sample):
    url = f"{viewer_url}/trees/{sample.ids['full_tree']}"
    default = fetch(url).body
    chosen = fetch(url + "?branch=r").body
    for body, on, off in ((default, "p", "r"), (chosen, "r", "p")):
        svg = body.split('<svg class="tree-path"')[1].split("</svg>")[0]
        assert svg.count('class="node on-path"') == 2
        assert f'data-branch="{on}"' in body
        assert re.search(
            rf'<section class="turn on-path" id="node-\d+" data-turn="2" data-branch="{on}">', body
        )
        assert re.search(rf'<section class="turn" id="node-\d+" data-turn="2" data-branch="{off}">', body)
        evolution = body.split('<table class="evolution">')[1].split("</table>")[0]
        assert evolution.count("<tr class=") == 2
    assert "both, followed rejected" in chosen and "both, followed preferred" in default
    assert 'href="?branch=r#node-' in default  # nodes link to the path through them
    assert fetch(url + "?branch=x").status == 400
    assert fetch(url + "?branch=rr").status == 404


def test_call_totals_of_newest_runs_are_computed_at_start(sample):
    from structlog.testing import capture_logs

    with capture_logs() as logs, serve_in_thread(create_app(sample.path, warm_runs=2)):
        deadline = time.monotonic() + 20
        while len([e for e in logs if e["event"] == "viewer.warm"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    warm = [e for e in logs if e["event"] == "viewer.warm"]
    assert [(e["run_id"], e["calls"]) for e in warm] == [(sample.ids["run2"], 0), (sample.ids["run1"], 15)]
    with capture_logs() as logs, serve_in_thread(create_app(sample.path, warm_runs=0)) as url:
        assert fetch(url + "/").status == 200
    assert not [e for e in logs if e["event"] == "viewer.warm"]


def test_empty_database_and_a_tree_without_nodes(tmp_path):
    from rich.console import Console

    from aloesim.environment.store import connect
    from aloesim.inspection import show

    db = tmp_path / "empty.db"
    connect(db, create=True).close()
    with serve_in_thread(create_app(db)) as url:
        index = fetch(url + "/")
        assert index.status == 200 and "No runs in this database yet." in index.body
        conn = connect(db)
        run = conn.execute(
            "INSERT INTO runs (kind, config, config_hash, started_at) VALUES ('generate', '{}', 'h', 0)"
        ).lastrowid
        a = conn.execute(
            "INSERT INTO persona_items (kind, text, source, created_at) VALUES ('profile', 'P', 'seed', 0)"
        ).lastrowid
        b = conn.execute(
            "INSERT INTO persona_items (kind, text, source, created_at) VALUES ('personality', 'Q', 'seed', 0)"
        ).lastrowid
        persona = conn.execute(
            "INSERT INTO personas (profile_id, personality_id, created_at) VALUES (?, ?, 0)", (a, b)
        ).lastrowid
        tree = conn.execute(
            "INSERT INTO trees (run_id, persona_id, mode, turns, seed, created_at) VALUES (?, ?, 'path', 3, 0, 0)",
            (run, persona),
        ).lastrowid
        conn.close()
        page = fetch(f"{url}/trees/{tree}")
        assert page.status == 200 and "No nodes yet." in page.body and "tree-path" not in page.body
        assert fetch(f"{url}/runs/{run}").status == 200
        assert "No LLM calls recorded" in fetch(f"{url}/runs/{run}/calls").body
    console = Console(record=True, width=100)
    conn = connect(db, readonly=True)
    console.print(show.render_tree(show.load_tree(conn, tree)))
    console.print(show.render_run(show.load_run(conn, run)))
    conn.close()
    out = console.export_text()
    assert "(no nodes yet)" in out and "pending" in out
