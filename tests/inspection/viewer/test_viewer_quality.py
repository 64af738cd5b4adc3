"""The quality section of the viewer's run page, over real HTTP: the flags
and every metric's row, stored text escaped, absent for runs that are not
generate runs."""

from __future__ import annotations

from pathlib import Path

from viewer_helpers import fetch

from aloesim.inspection.viewer import create_app, serve_in_thread
from tests.support.quality_trees import ALL_STOP, PROFILES, TreeBuilder, Turn

XSS = "<script>window.pwned = true</script>"


def test_run_page_shows_the_quality_summary(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with TreeBuilder(path) as b:
        run = b.run(turns=2)
        t = b.tree(run, b.persona(*PROFILES[0]), turns=2)
        b.conversation(t, [
            Turn(f"How can I help you today? {XSS}", finish={**ALL_STOP, "rejected": "length"}),
            Turn("I spent the morning in my garden.", finish=ALL_STOP),
        ])
        other = b.run("personas")
    with serve_in_thread(create_app(path, warm_runs=0)) as url:
        page = fetch(f"{url}/runs/{run}")
        assert page.status == 200
        section = page.body.split('<section class="quality">')[1].split("</section>")[0]
        assert "2 nodes of 1 trees" in section and f"aloe quality run={run}" in section
        assert "role flips 0.500 &gt; 0.02: 1 of 2 user messages speak as the AI" in section
        assert "truncation 0.125 &gt; 0.02: 1 of 8 calls stopped at max_tokens" in section
        assert section.count('<tr class="q-flagged">') == 2 and section.count('<tr class="q-not-measured">') == 3
        assert XSS not in page.body  # the message itself is not shown here, and nothing stored is unescaped
        assert '<section class="quality">' not in fetch(f"{url}/runs/{other}").body
