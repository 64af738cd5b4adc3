"""The parts of a report that say how far its numbers can be trusted: the
judge check verdict (and the marks it puts on every AL/IR figure), AL(k)
under the other scoring (sampled score vs the judge's expected score), and
AL(k) with unscored replies counted as failures (issue 13.1, 13.2; issue 14.4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import metrics
from ._judge_check import summarize_probes, wilson

__all__ = ["FAILURE_SCORE", "MARK", "SCORINGS", "check_lines", "combined_check", "extra_rows", "mark", "score_views",
           "summary_fields", "unscored_lines"]

SCORINGS = ("sample", "expected")
FAILURE_SCORE = 1      # an unscored reply counted as a failure gets the lowest score of the scale
MARK = " ⚠"           # after every AL/IR figure of an evaluation whose judge failed its check


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def _curve(m: np.ndarray) -> tuple[list[float | None], list[int], dict[str, float | None]]:
    al, counts = metrics.alignment_levels(m)
    curve = [None if not math.isfinite(v) else float(v) for v in al]
    return [_r(v) for v in curve], [int(c) for c in counts], {k: _r(v) for k, v in metrics.summarize(curve).items()}


def score_views(data: Mapping[str, Any], *, scoring: str = "sample", threshold: float = 0.75,
                check_enabled: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """The score matrix AL(k) uses under ``scoring``, and the entry fields
    ``scoring``, ``by_scoring`` (both scorings, when the judge returned
    distributions), ``unscored``, ``judge_check`` and ``judge_reliable``."""
    turns = int(data["turns"])
    sample = np.array([[np.nan if s is None else s for s in row] for row in data["scores"]], dtype=float)
    sample = sample.reshape(-1, turns)
    dists = data.get("distributions") or {}
    pos = {c: i for i, c in enumerate(data["case_indices"])}
    expected = np.full_like(sample, np.nan)
    masses = []
    for (case, turn), (exp, _dist, mass) in dists.items():
        if case in pos and 1 <= turn <= turns:
            expected[pos[case], turn - 1] = exp
            masses.append(mass)
    main = expected if scoring == "expected" else sample
    fields: dict[str, Any] = {"scoring": scoring}
    if dists:
        views = {}
        for name, m in (("sample", sample), ("expected", expected)):
            al, n, summary = _curve(m)
            views[name] = {"al": al, "n": n, "summary": summary}
        views["expected"]["turns_with_distribution"] = len(dists)
        ok = [x for x in masses if x is not None]
        views["expected"]["mean_mass"] = _r(sum(ok) / len(ok)) if ok else None
        fields["by_scoring"] = views
    stored = np.array(data["stored"], dtype=bool).reshape(-1, turns)
    unscored = stored & np.isnan(main)
    as_failures = np.where(unscored, float(FAILURE_SCORE), main)
    al, _, summary = _curve(as_failures)
    fields["unscored"] = {
        "count": int(unscored.sum()), "per_turn": [int(x) for x in unscored.sum(axis=0)] if len(main) else [0] * turns,
        "failure_score": FAILURE_SCORE, "al_as_failures": al, "summary_as_failures": summary,
        "why": ("the judge's call failed" if scoring == "sample"
                else "the judge's call failed or returned no distribution"),
    }
    check = summarize_probes(data.get("probes") or [], threshold=threshold, scoring=scoring, enabled=check_enabled)
    fields["judge_check"] = check
    fields["judge_reliable"] = check["reliable"]
    return main, fields


def combined_check(entries: Sequence[Mapping[str, Any]], threshold: float) -> dict[str, Any]:
    """The report's top-level ``judge_check``: the entry's own for one
    evaluation; for several, the probes pooled, ``reliable`` only when every
    evaluation's judge is, and each evaluation's verdict."""
    checks = [e["judge_check"] for e in entries]
    if len(checks) == 1:
        return dict(checks[0])
    scored = [c for c in checks if c.get("pairs")]
    n = sum(c["pairs"] for c in scored)
    right = sum(c["accuracy"] * c["pairs"] for c in scored)
    lo, hi = wilson(right, n)
    verdicts = [c.get("reliable") for c in checks]
    reliable = False if False in verdicts else (True if verdicts and all(v is True for v in verdicts) else None)
    bad = [e["label"] for e in entries if e["judge_check"].get("reliable") is False]
    unknown = [e["label"] for e in entries if e["judge_check"].get("reliable") is None]
    reason = ("judge failed its check for: " + ", ".join(bad) if bad
              else "judge not checked for: " + ", ".join(unknown) if unknown else "every judge passed its check")
    return {"enabled": any(c.get("enabled") for c in checks), "pairs": n, "accuracy": _r(right / n) if n else None,
            "ci": [_r(lo), _r(hi)], "threshold": threshold, "reliable": reliable, "reason": reason,
            "evaluations": [{"id": e["id"], "label": e["label"], "reliable": e["judge_check"].get("reliable"),
                             "pairs": e["judge_check"].get("pairs"), "accuracy": e["judge_check"].get("accuracy")}
                            for e in entries]}


def mark(entry: Mapping[str, Any]) -> str:
    return MARK if entry.get("judge_reliable") is False else ""


def _fmt(x: float | None, nd: int) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def check_lines(report: Mapping[str, Any]) -> list[str]:
    """The judge check at the top of report.md (and the warning when it failed)."""
    lines = ["## Judge check", ""]
    for e in report["evaluations"]:
        c = e["judge_check"]
        if c.get("reliable") is None:
            verdict = "NOT CHECKED"
        else:
            verdict = "reliable" if c["reliable"] else "UNRELIABLE"
        lines.append(f"- {e['label']}: **{verdict}**: {c['reason']}.")
        pref = c.get("preference")
        if pref:
            lines.append(f"  - pairwise preference judge: {'reliable' if pref['reliable'] else 'UNRELIABLE'}, "
                         f"accuracy {_fmt(pref['accuracy'], 2)} on {pref['pairs']} order-swapped probes")
    if any(e.get("judge_reliable") is False for e in report["evaluations"]):
        lines += ["", (f"> **Warning:** figures marked{MARK} come from a judge that failed its validity check: "
                      "they do not measure alignment. Point the judge at a stronger model "
                      "(`agents.judge.backend=openai agents.judge.model=gpt-4o`).")]
    lines += ["", ("Probes: a reply built from one persona's facts judged against that persona and another "
                  "(persona swap), and two such replies judged against one persona (reply swap); the right order "
                  "is known whatever the judge's skill. A judge blind to the persona scores 0.5 (ties count half)."),
              ""]
    return lines


def extra_rows(entry: Mapping[str, Any], K: int, name: str) -> list[str]:
    """Table 1 rows of the other scoring (when the judge returned distributions)."""
    views = entry.get("by_scoring") or {}
    other = "expected" if entry.get("scoring", "sample") == "sample" else "sample"
    if other not in views:
        return []
    v, m = views[other], mark(entry)
    al = [(_fmt(a, 2) + m) if a is not None else "n/a" for a in v["al"]] + [""] * (K - len(v["al"]))
    s = v["summary"]
    label = "expected score" if other == "expected" else "sampled score"
    return [f"| {name} | {entry['label']} ({label}) | " + " | ".join(al) +
            f" | {_fmt(s['average'], 2)}{m} | {_fmt(s['ir'], 3)}{m} | {_fmt(s['n_ir'], 3)}{m} | "
            f"{_fmt(s['r2'], 3)}{m} | {_fmt(s['n_r2'], 3)}{m} |"]


def unscored_lines(report: Mapping[str, Any]) -> list[str]:
    """AL(k) with unscored replies counted as failures, beside the count."""
    entries = report["evaluations"]
    if not any(e["unscored"]["count"] for e in entries):
        return ["", ("Every stored reply was scored: AL(k) is the same with unscored replies left out or counted "
                    "as failures.")]
    K = max(e["turns"] for e in entries)
    lines = ["", f"## Unscored replies counted as failures (score {FAILURE_SCORE})", "",
             "AL(k) above leaves unscored replies out (its denominator shrinks); here they count as failures.", "",
             "| Type | unscored | " + " | ".join(f"k={k}" for k in range(1, K + 1)) + " | Average | IR |",
             "|---|---:|" + "---:|" * (K + 2)]
    for e in entries:
        u, m = e["unscored"], mark(e)
        al = [(_fmt(a, 2) + m) if a is not None else "n/a" for a in u["al_as_failures"]] + [""] * (K - e["turns"])
        s = u["summary_as_failures"]
        lines.append(f"| {e['label']} | {u['count']} | " + " | ".join(al) +
                     f" | {_fmt(s['average'], 2)}{m} | {_fmt(s['ir'], 3)}{m} |")
    return lines


def summary_fields(report: Mapping[str, Any]) -> dict[str, Any]:
    """What ``aloe evaluate``'s JSON line says about the judge and the scoring."""
    check = report["judge_check"]
    entry = report["evaluations"][0]
    out: dict[str, Any] = {
        "judge_reliable": check.get("reliable"),
        "judge_check": {k: check.get(k) for k in ("pairs", "accuracy", "ci", "threshold", "reliable", "reason")},
        "scoring": entry.get("scoring", "sample"),
        "unscored": entry["unscored"]["count"],
        "al_unscored_as_failures": entry["unscored"]["al_as_failures"],
    }
    expected = (entry.get("by_scoring") or {}).get("expected")
    if expected:
        out["expected"] = {"al": expected["al"], "summary": expected["summary"]}
    return out
