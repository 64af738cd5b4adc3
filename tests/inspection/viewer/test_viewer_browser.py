"""The viewer in real headless Chromium (Debian's ``/usr/bin/chromium``,
driven by Python Playwright): navigation by links, the tree page and its
path, a screenshot, script in data running nothing, and every link reachable."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.sample_db import SAMPLE

CHROMIUM = os.environ.get("ALOE_CHROMIUM", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def test_run_list_to_tree_with_turns_and_path(page, viewer_url, sample, tmp_path):
    page.goto(viewer_url + "/")
    assert page.title().startswith("Runs")
    page.locator("a.run-link", has_text=f"run #{sample.ids['run1']}").click()
    page.wait_for_url(f"**/runs/{sample.ids['run1']}")
    assert page.locator("a.tree-link").count() == 2
    page.locator("a.tree-link", has_text=f"tree #{sample.ids['tree']}").click()
    page.wait_for_url(f"**/trees/{sample.ids['tree']}")

    turns = page.locator("section.turn")
    assert turns.count() == 3
    assert [turns.nth(i).get_attribute("data-turn") for i in range(3)] == ["1", "2", "3"]
    assert "I taught history for 30 years" in turns.nth(1).locator(".user-message").inner_text()
    # which reply continued, per turn: preferred, rejected, preferred
    for i, which in enumerate(["preferred", "rejected", "preferred"]):
        marked = turns.nth(i).locator(".reply.continued")
        assert marked.count() == 1 and which in marked.get_attribute("class")
    # the inferred persona change is highlighted
    assert turns.nth(2).locator(".inferred.changed ins").first.inner_text().strip() == "living in Lyon"

    svg = page.locator("svg.tree-path")
    assert svg.is_visible()
    assert svg.locator("circle.node.on-path").count() == 3
    assert svg.locator("line.edge.on-path").count() == 3
    box = svg.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 40
    # path nodes link to their turn
    svg.locator("circle.node.on-path").nth(1).click()
    assert urlsplit(page.url).fragment == turns.nth(1).get_attribute("id")

    # the raw calls open on click
    call = turns.nth(1).locator("details.call").first
    call.locator("summary").click()
    assert "Start turn 2" in call.inner_text()

    shot = tmp_path / "tree.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height > 900 and len(data) > 20_000
    assert page.errors == []


@pytest.mark.parametrize("where", ["tree", "run1", "case", "index"])
def test_script_in_data_shows_as_text_and_runs_nothing(page, viewer_url, sample, where):
    path = {
        "tree": f"/trees/{sample.ids['tree']}",
        "run1": f"/runs/{sample.ids['run1']}",
        "case": f"/cases/{sample.ids['case']}",
        "index": "/",
    }[where]
    page.goto(viewer_url + path)
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.pwned") == "undefined"
    # escaping, not just the CSP, stopped it: no script or img element came from the data
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    text = page.locator("main").inner_text()
    if where == "index":
        assert "base <i>model</i>" in text
    else:
        assert SAMPLE["xss"] in text
    if where == "tree":
        assert page.locator(".persona-profile").inner_text() == SAMPLE["profile"]
        assert '<img src=x onerror="window.pwned = true">' in text


def test_every_link_from_the_index_reaches_a_page_without_5xx(browser, small_pages_url, sample):
    context = browser.new_context()
    pg = context.new_page()
    origin = urlsplit(small_pages_url).netloc
    seen: dict[str, int] = {}
    todo = [small_pages_url + "/"]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        resp = pg.goto(url)
        seen[url] = resp.status
        hrefs = pg.eval_on_selector_all(
            "a[href]", "els => els.map(e => new URL(e.getAttribute('href'), document.baseURI).href)"
        )
        for href in hrefs:
            parts = urlsplit(href)
            if parts.netloc != origin:
                continue
            clean = href.split("#", 1)[0]
            if clean not in seen:
                todo.append(clean)
    context.close()
    assert all(code < 500 for code in seen.values())
    assert all(code == 200 for code in seen.values()), {u: c for u, c in seen.items() if c != 200}
    paths = {urlsplit(u).path for u in seen}
    for key, prefix in (
        ("run1", "runs"),
        ("run2", "runs"),
        ("tree", "trees"),
        ("failed_tree", "trees"),
        ("full_tree", "trees"),
        ("evaluation", "evaluations"),
        ("case", "cases"),
    ):
        assert f"/{prefix}/{sample.ids[key]}" in paths
    assert len(seen) >= 12  # pages of runs and trees (one row per page) are links too


def test_evaluation_chart_renders(page, viewer_url, sample):
    page.goto(f"{viewer_url}/evaluations/{sample.ids['evaluation']}")
    chart = page.locator("svg.al-chart")
    assert chart.is_visible()
    assert chart.locator("circle.al-point").count() == 3
    ys = [float(chart.locator("circle.al-point").nth(i).get_attribute("cy")) for i in range(3)]
    assert ys[0] > ys[1] > ys[2]  # AL rises 2.5 -> 3.0 -> 4.5: points go up the chart
    assert chart.locator("line.fit").count() == 1
    page.get_by_role("link", name=f"case #{sample.ids['case']}", exact=True).click()
    page.wait_for_url(f"**/cases/{sample.ids['case']}")
    assert page.locator("section.turn").count() == 3
