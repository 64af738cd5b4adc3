"""Dollars on the viewer's run page (issue 16.2): the run's total, per model and
per role, "unknown" where no price is known (never $0), and the budget a run
stopped at. Over a copy of the sample database with prices set on some calls;
the page read over HTTP and in real headless Chromium."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from viewer_helpers import fetch

from aloesim.environment.store import dollars_text
from aloesim.inspection.viewer import create_app, serve_in_thread
from tests.support.sample_db import write_sample

CHROMIUM = os.environ.get("ALOE_CHROMIUM", "/usr/bin/chromium")
PRICES = {"user": 0.01, "preferred": 0.002}  # the other roles' calls stay unpriced (NULL)


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    db = tmp_path_factory.mktemp("viewer-cost") / "priced.db"
    ids = write_sample(db)
    with sqlite3.connect(db) as conn:
        for role, usd in PRICES.items():
            conn.execute("UPDATE llm_calls SET cost_usd = ? WHERE role = ? AND error IS NULL", (usd, role))
        conn.execute("UPDATE runs SET stats = json_set(COALESCE(stats, '{}'), '$.budget', json('{\"usd\": 0.05, "
                     "\"spent_usd\": 0.046, \"reached\": true}')) WHERE id = ?", (ids["run1"],))
    with serve_in_thread(create_app(db)) as url:
        yield url, ids["run1"], db


def expected(db: Path, run_id: int, by: str) -> dict[str, str]:
    """Per role or model, the dollars as people see them, from the stored rows."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT {by}, SUM(cost_usd), SUM(cost_usd IS NULL) FROM llm_calls WHERE run_id = ? "
                            f"GROUP BY {by}", (run_id,)).fetchall()
    return {k: dollars_text(cost, unpriced) for k, cost, unpriced in rows}


def test_the_run_page_shows_the_runs_dollars(priced) -> None:
    url, run_id, db = priced
    body = fetch(f"{url}/runs/{run_id}").body
    with sqlite3.connect(db) as conn:
        total, unpriced = conn.execute("SELECT SUM(cost_usd), SUM(cost_usd IS NULL) FROM llm_calls WHERE run_id = ?",
                                       (run_id,)).fetchone()
    assert unpriced > 0 and total > 0
    (shown,) = re.findall(r'<span class="cost-total">([^<]*)</span>', body)
    assert shown == dollars_text(total, unpriced) and "unknown" in shown
    roles = dict(re.findall(r'<span class="cost-role">(\S+) ([^<]*)</span>', body))
    assert roles == expected(db, run_id, "role")
    with sqlite3.connect(db) as conn:
        ok, failed = conn.execute("SELECT SUM(error IS NULL), SUM(error IS NOT NULL) FROM llm_calls WHERE run_id = ? "
                                  "AND role = 'user'", (run_id,)).fetchone()
    assert roles["inducer"] == "unknown" and roles["user"] == dollars_text(PRICES["user"] * ok, failed)
    models = dict(re.findall(r'<span class="cost-model">(\S+) ([^<]*)</span>', body))
    assert models == expected(db, run_id, "model")
    assert "(stopped at budget.usd=0.05)" in body


def test_a_run_without_calls_costs_nothing_and_says_so(priced) -> None:
    url, run_id, db = priced
    with sqlite3.connect(db) as conn:
        other = conn.execute("SELECT id FROM runs WHERE id != ? AND id NOT IN (SELECT run_id FROM llm_calls "
                             "WHERE run_id IS NOT NULL) LIMIT 1", (run_id,)).fetchone()[0]
    body = fetch(f"{url}/runs/{other}").body
    assert '<span class="cost-total">$0</span>' in body and "cost-role" not in body and "budget.usd" not in body


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
def test_the_run_page_dollars_in_chromium(priced) -> None:
    from playwright.sync_api import sync_playwright

    url, run_id, db = priced
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto(f"{url}/runs/{run_id}")
            dollars = page.locator("dd.dollars")
            assert dollars.is_visible()
            roles = expected(db, run_id, "role")
            assert page.locator("span.cost-role").all_inner_texts() == [f"{r} {d}" for r, d in sorted(roles.items())]
            assert "unknown" in page.locator("span.cost-total").inner_text()
        finally:
            browser.close()
