"""Issue 18: the viewer's run index compares runs of the same kind and only
real differences; coinciding AL(k) curves both stay visible (SVG and PNG)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from aloesim.environment.store import connect
from aloesim.inspection import show
from aloesim.inspection.show import Point
from aloesim.inspection.viewer._svg import al_chart
from tests.support.sample_db import write_sample


def test_missing_versus_null_is_no_difference():
    assert show.config_diff({"export": {"dir": None}, "a": 1}, {"a": 2}) == [("a", 1, 2)]


def test_index_compares_runs_of_the_same_kind_only(tmp_path):
    path = tmp_path / "kinds.db"
    ids = write_sample(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO runs (kind, config, config_hash, status, started_at) VALUES (?, ?, ?, ?, ?)",
                     ("evaluate", json.dumps({"evaluation": {"cases": 4}, "export": {"dir": None}}), "e1",
                      "complete", 1.0))
        conn.execute("INSERT INTO runs (kind, config, config_hash, status, started_at) VALUES (?, ?, ?, ?, ?)",
                     ("evaluate", json.dumps({"evaluation": {"cases": 8}}), "e2", "complete", 2.0))
    conn.close()
    c = connect(path, readonly=True)
    try:
        rows, _ = show.list_runs(c)
    finally:
        c.close()
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r.kind, []).append(r)
    g1, g2 = by_kind["generate"]
    e1, e2 = by_kind["evaluate"]
    assert g1.base is None and e1.base is None and e1.diff == []  # the first of each kind is the reference
    assert g2.base == ids["run1"]
    assert e2.base == e1.id and e2.diff == [("evaluation.cases", 4, 8)]  # not export.dir: null → null


def test_coinciding_svg_curves_are_both_visible():
    curve = [Point(k, 3.0, 4) for k in (1, 2, 3)]
    chart = al_chart([("base", None, curve), ("sft", None, curve)])
    xs = [[x for x, *_ in s.points] for s in chart.series]
    assert all(a != b for a, b in zip(*xs))  # the second is not drawn on top of the first
    assert {s.color for s in chart.series} == {0, 1}


def test_coinciding_png_curves_are_both_visible(tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    from aloesim.evaluation import render_plot

    al = [{"turn": k, "al": 3.0, "ci": [None, None], "n": 4} for k in (1, 2, 3)]
    ev = {"label": "same", "turns": 3, "al": al, "model": {"name": "m"}}
    report = {"evaluations": [{**ev, "label": "base"}, {**ev, "label": "sft"}]}
    png = tmp_path / "al.png"
    render_plot(report, png)
    img = mpimg.imread(png)[..., :3]

    band = img[int(img.shape[0] * 0.45): int(img.shape[0] * 0.6)]  # the rows around AL = 3, not the legend

    def pixels(hex_colour: str) -> int:
        rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        return int((np.abs(band - rgb).sum(axis=2) < 0.08).sum())

    # measured: with the offset and dashes, C0 (base) shows 365 pixels; drawn exactly under C1, 0
    assert pixels("#1f77b4") > 100 and pixels("#ff7f0e") > 100


def test_aloe_report_prints_the_table_it_wrote(tmp_path, capsys):
    """Issue 18: ``aloe report`` printed only JSON. The table it wrote goes to
    stderr (people), the JSON line stays alone on stdout (scripts)."""
    from aloesim.orchestration import cli

    path = tmp_path / "r.db"
    write_sample(path)
    out_dir = tmp_path / "rep"
    assert cli.main(["report", f"db={path}", f"evaluation.out_dir={out_dir}", "evaluation.bootstrap=100"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["report"]["md"].endswith("report.md")  # stdout: one JSON line
    table = (out_dir / "report.md").read_text()
    assert "| Models | Type | k=1 |" in err and table.splitlines()[4] in err


def test_config_differences_have_one_home_and_agree_with_config_diff() -> None:
    """`aloe runs` (config_differences over a group) and `aloe show run=` / the viewer (config_diff
    between two) read one flattening: the keys that vary are the keys config_diff names."""
    a = {"generation": {"trees": 2, "turns": 3}, "export": {"dir": None}, "seed": 0}
    b = {"generation": {"trees": 5, "turns": 3}, "seed": 0}
    assert show.config_differences({1: a, 2: b}) == {1: {"generation.trees": 2}, 2: {"generation.trees": 5}}
    assert [k for k, *_ in show.config_diff(a, b)] == ["generation.trees"]
    assert not hasattr(show, "fit_line")  # the line fit is evaluation.metrics'


def test_improvement_is_evaluation_metrics_fit() -> None:
    from aloesim.evaluation import metrics
    from aloesim.inspection.show import EvaluationView

    curve = [Point(1, 2.0, 3), Point(2, None, 0), Point(3, 3.0, 3), Point(4, 3.5, 2)]
    ev = EvaluationView(1, None, "x", {}, {}, {}, 4, "complete", None, 0.0, curve, {"complete": 3}, 0)
    ir, _, r2 = metrics.fit_line([2.0, 3.0, 3.5], [1, 3, 4])
    assert ev.improvement == (ir, r2) and ir == pytest.approx(0.5)
    flat = EvaluationView(1, None, "x", {}, {}, {}, 2, "complete", None, 0.0, [Point(1, 3.0, 1), Point(2, 3.0, 1)],
                          {}, 0)
    assert flat.improvement == (0.0, None)  # constant AL: R² undefined
