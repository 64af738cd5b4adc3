"""The quality report as files (``quality.json``, ``quality.md``,
``quality.png``) and as a few lines for a terminal (``summary_lines``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...core import replace_atomically
from ...evaluation.metrics import fit_line
from ._metrics import METRICS

LABELS = {"revelation": "revelation", "leakage": "leakage", "role_flips": "role flips", "truncation": "truncation",
          "empty": "empty replies", "duplicates": "duplicates", "length_bias": "length bias (p/r)",
          "diversity": "diversity", "judge_agreement": "judge agreement"}
RATES = ("leakage", "role_flips", "truncation", "empty", "duplicates")


def _num(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _status(m: Mapping[str, Any]) -> str:
    return "not measured" if m["flagged"] is None else "**FLAGGED**" if m["flagged"] else "ok"


def _value(name: str, m: Mapping[str, Any]) -> str:
    if m["value"] is None:
        return "-"
    if name == "revelation":
        slope = "-" if m["slope"] is None else f"{m['slope']:+.4f}"
        return f"{m['value']:.3f} (slope {slope}/turn)"
    if name == "length_bias":
        return f"{m['value']:.2f} ({m['unit']}; preferred longer in {_num(m['preferred_longer'], 2)})"
    if name == "diversity":
        return f"{m['value']:.3f} (lowest {m['lowest']:.3f} at turn {m['lowest_turn']})"
    if name == "judge_agreement":
        return f"{m['value']:.3f} ({m['agree']}/{m['judged']})"
    return f"{m['value']:.3f} ({m['count']}/{m['of']})"


def _threshold(name: str, m: Mapping[str, Any]) -> str:
    t = m["threshold"]
    if name == "length_bias":
        return f"within [{1 / t:.2f}, {t}]"
    return {"revelation": f"slope > {t}", "diversity": f">= {t} at every turn",
            "judge_agreement": f">= {t}"}.get(name, f"<= {t}")


def _details(name: str, m: Mapping[str, Any]) -> str:
    parts = []
    if name == "revelation" and m["value"] is not None:
        parts.append(f"first turn {_num(m['first'])}, last {_num(m['last'])}")
    for key in ("patterns", "by_role", "kinds", "finish_reasons"):
        if m.get(key):
            parts.append(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in m[key].items()))
    if name == "diversity" and m.get("distinct_2") is not None:
        parts.append(f"distinct-2 {m['distinct_2']:.3f}")
    if name == "judge_agreement" and m.get("judged"):
        parts.append(f"disagree {m['disagree']}, split {m['split']}, swapped {m['swapped']}")
    if m.get("note"):
        parts.append(m["note"])
    return "; ".join(parts).replace("|", "\\|")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _scope(report: Mapping[str, Any]) -> str:
    run = report["run"]
    status = ", ".join(f"{n} {s}" for s, n in run["trees_by_status"].items())
    scope = f"{run['nodes']} nodes of {run['checked_trees']} trees"
    if run["sampled"]:
        scope += f" (a sample: the first {run['checked_trees']} of the run's {run['trees']} trees)"
    return f"{scope}; run trees: {status or 'none'}"


def render_markdown(report: Mapping[str, Any]) -> str:
    run, m = report["run"], report["metrics"]
    lines = [f"# Quality of run #{run['id']}", "", _scope(report) + ".",
             f"Embedder: {report['embedder'] or 'none (revelation and diversity not measured)'}.", ""]
    flags = report["flags"]
    if flags:
        lines += [f"**{len(flags)} flagged:**", ""] + [f"- {_cell(f)}" for f in flags] + [""]
    else:
        lines += ["No metric is flagged.", ""]
    lines += ["| metric | value | threshold | status | details |", "|---|---|---|---|---|"]
    for name in METRICS:
        v = m[name]
        lines.append(f"| {LABELS[name]} | {_value(name, v)} | {_threshold(name, v)} | {_status(v)} | {_details(name, v)} |")
    cols = [("nodes", "nodes", 0), ("revelation", "revelation", 3), ("leakage", "leakage", 3),
            ("role_flips", "role flips", 3), ("truncation", "truncation", 3), ("empty", "empty", 3),
            ("duplicates", "duplicates", 3), ("length_ratio", "length p/r", 2), ("diversity", "diversity", 3),
            ("distinct_2", "distinct-2", 3), ("judge_agreement", "judge agreement", 3)]
    lines += ["", "## Per turn", "", "| turn | " + " | ".join(c[1] for c in cols) + " |",
              "|---" * (len(cols) + 1) + "|"]
    for row in report["per_turn"]:
        cells = [str(row[k]) if nd == 0 else _num(row[k], nd) for k, _, nd in cols]
        lines.append(f"| {row['turn']} | " + " | ".join(cells) + " |")
    if report.get("examples"):
        lines += ["", "## Examples of flagged nodes", ""]
        for flag, items in report["examples"].items():
            lines.append(f"- **{flag}**")
            for e in items:
                lines.append(f"  - tree {e['tree_id']}, turn {e['turn']} (branch `{e['branch'] or '-'}`): "
                             f"{_cell(e['detail'])}; user: {_cell(e['user_message'])}")
    lines += ["", "Definitions of every metric and flag: docs/quality.md (aloesim)."]
    return "\n".join(lines) + "\n"


def render_plot(report: Mapping[str, Any], path: str | Path, *, dpi: int = 120) -> None:
    """Left: revelation per turn (with its least-squares line); right: the
    flag rates per turn (and judge agreement where the check ran)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rows = report["per_turn"]
    ks = [r["turn"] for r in rows]
    rev = [(r["turn"], r["revelation"]) for r in rows if r["revelation"] is not None]
    if rev:
        for key, style in (("revelation", "-o"), ("revelation_profile", "--"), ("revelation_personality", ":")):
            pts = [(r["turn"], r[key]) for r in rows if r[key] is not None]
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], style, label=key.replace("_", " "))
        if len(rev) >= 2:
            b, a, _ = fit_line([p[1] for p in rev], [p[0] for p in rev])
            xs = np.array([rev[0][0], rev[-1][0]], dtype=float)
            ax1.plot(xs, b * xs + a, color="gray", linewidth=1, label=f"fit ({b:+.3f}/turn)")
        ax1.legend(loc="best", fontsize="small")
    else:
        ax1.text(0.5, 0.5, "revelation not measured\n(no embedder)", ha="center", va="center",
                 transform=ax1.transAxes)
    ax1.set_xlabel("Turn")
    ax1.set_ylabel("cosine(inferred, true persona)")
    ax1.set_title("Revelation")
    for name in RATES + ("judge_agreement",):
        pts = [(r["turn"], r[name]) for r in rows if r[name] is not None]
        if pts and (name != "judge_agreement" or report["metrics"]["judge_agreement"]["judged"]):
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "-o", markersize=3, label=LABELS[name])
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("Turn")
    ax2.set_ylabel("share")
    ax2.set_title("Flags per turn")
    ax2.legend(loc="best", fontsize="small")
    for ax in (ax1, ax2):
        if ks:
            ax.set_xticks(ks)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Quality of run #{report['run']['id']}" + (" (sample)" if report["run"]["sampled"] else ""))
    fig.tight_layout()
    fig.savefig(str(path), format="png")




def write_quality_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write quality.json, quality.md and quality.png into ``out_dir`` (created;
    each file replaced atomically). Returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "quality.json", "md": out / "quality.md", "png": out / "quality.png"}
    replace_atomically(paths["json"], lambda p: p.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8"))
    replace_atomically(paths["md"], lambda p: p.write_text(render_markdown(report), encoding="utf-8"))
    replace_atomically(paths["png"], lambda p: render_plot(report, p))
    return paths


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A few lines for a terminal: scope, every metric's value, then one line per flag."""
    m = report["metrics"]
    head = f"quality of run {report['run']['id']}: {_scope(report)}; {len(report['flags'])} flagged"
    parts = []
    for name in METRICS:
        v = m[name]
        shown = "not measured" if v["value"] is None else (
            f"{v['value']:.2f}" if name == "length_bias" else f"{v['value']:.3f}")
        if name == "revelation" and v.get("slope") is not None:
            shown += f" (slope {v['slope']:+.3f}/turn)"
        parts.append(f"{LABELS[name]} {shown}{' FLAGGED' if v['flagged'] else ''}")
    return [head, "  " + "; ".join(parts), *(f"  ! {f}" for f in report["flags"])]
