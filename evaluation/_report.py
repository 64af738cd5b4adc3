"""Reports over stored evaluations: ``report.json``, ``report.md`` (laid out
like the paper's Table 1) and ``al_curve.png`` (AL(k) over turns, one line
per evaluated model, like Figure 4).

One format for one evaluation (``aloe evaluate``) and for a comparison of
several (``aloe report``): ``{"version", "evaluations": [...], ...}``.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core import replace_atomically
from ..core.errors import ConfigError
from ..environment.store import Calls, Evaluations, JudgeProbes, Runs, Store
from . import metrics
from ._report_checks import check_lines, combined_check, extra_rows, mark, score_views, unscored_lines

__all__ = ["REPORT_VERSION", "build_report", "load_evaluation", "render_markdown", "render_plot", "summarize_evaluation",
           "write_report", "write_scores"]

REPORT_VERSION = 1


async def load_evaluation(store: Store, evaluation_id: int) -> dict[str, Any]:
    """Everything a report needs about one stored evaluation: identities, the
    cases x turns score matrix (None where unscored), failures, token use."""
    return await store.read(lambda c: evaluation_data(c, evaluation_id))


def evaluation_data(conn: sqlite3.Connection, evaluation_id: int) -> dict[str, Any]:
    """``load_evaluation`` on a connection."""
    repo = Evaluations(conn)
    ev = repo.get(evaluation_id)
    if ev is None:
        raise ConfigError("report.evaluations", evaluation_id, f"the id of a stored evaluation (known: {repo.ids()})")
    turns = int(ev.turns)
    cases = repo.cases(evaluation_id)
    pos = {c.case_index: i for i, c in enumerate(cases)}
    scores: list[list[int | None]] = [[None] * turns for _ in cases]
    stored = [[False] * turns for _ in cases]
    judge_failures = []
    for case_index, t, score, judge_error in repo.scores(evaluation_id):
        i = pos[case_index]
        if 1 <= t <= turns:
            scores[i][t - 1] = None if score is None else int(score)
            stored[i][t - 1] = True
        if score is None:
            judge_failures.append({"case": case_index, "turn": t, "error": judge_error})
    case_failures = [{"case": c.case_index, "error": c.error, "turns_done": sum(stored[pos[c.case_index]])}
                     for c in cases if c.status == "failed"]
    unfinished = [c.case_index for c in cases if c.status == "pending"]
    tokens: dict[str, dict[str, int]] = {}
    if ev.run_id is not None:
        for r in Calls(conn).by_role(ev.run_id):
            tokens[r.role] = {"calls": r.calls, "prompt_tokens": r.prompt_tokens,
                              "completion_tokens": r.completion_tokens, "cached": r.cached, "errors": r.errors}
    run = Runs(conn).get(ev.run_id) if ev.run_id is not None else None
    config = run.config if run is not None and isinstance(run.config, dict) else {}
    return {
        "case_set": config.get("case_set"),  # which cases, from which files (hashes), how many
        "id": ev.id, "run_id": ev.run_id, "label": ev.label, "status": ev.status,
        "model": ev.model, "user_model": ev.user_model, "judge_model": ev.judge_model, "turns": turns,
        "created_at": ev.created_at, "case_indices": [c.case_index for c in cases], "scores": scores,
        "stored": stored, "judge_failures": judge_failures, "case_failures": case_failures,
        "unfinished": unfinished, "tokens": tokens, "probes": JudgeProbes(conn).of(evaluation_id),
        "distributions": repo.distributions(evaluation_id),
    }


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), nd)


def summarize_evaluation(data: Mapping[str, Any], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                         labels: Mapping[tuple[int, int], int | None] | None = None,
                         labels_source: str = "labels", scoring: str = "sample", judge_threshold: float = 0.75,
                         judge_check: bool = True) -> dict[str, Any]:
    """The report entry of one evaluation: per-turn AL with bootstrap CIs,
    summary metrics (with reasons for undefined ones), failures, identities,
    token use, and Cohen's kappa against ``labels`` {(case, turn): score} if given.
    AL uses the sampled scores or the judge's expected ones (``scoring``); the
    judge check verdict, the other scoring and the unscored replies come with it."""
    turns = int(data["turns"])
    m, checks = score_views(data, scoring=scoring, threshold=judge_threshold, check_enabled=judge_check)
    al, counts = metrics.alignment_levels(m)
    ci = metrics.bootstrap(m, n=n_boot, seed=seed, level=level)
    stored = np.array(data["stored"], dtype=bool).reshape(-1, turns)
    judge_failed = np.sum(stored & np.isnan(m), axis=0) if len(m) else np.zeros(turns, dtype=int)
    per_turn = [{"turn": k + 1, "al": _r(al[k]), "ci": [_r(v) for v in ci["al"][k]], "n": int(counts[k]),
                 "judge_failures": int(judge_failed[k]), "missing": int(len(m) - stored[:, k].sum()) if len(m) else 0}
                for k in range(turns)]
    curve = [None if not math.isfinite(v) else float(v) for v in al]
    summary = {k: _r(v) for k, v in metrics.summarize(curve).items()}
    entry: dict[str, Any] = {
        "id": data["id"], "label": data["label"], "status": data["status"],
        "model": data["model"], "user_model": data["user_model"], "judge_model": data["judge_model"],
        "cases": len(data["scores"]), "turns": turns, "case_set": data.get("case_set"),
        "al": per_turn, "summary": summary,
        "ci": {"average": [_r(v) for v in ci["average"]], "ir": [_r(v) for v in ci["ir"]]},
        "undefined": metrics.reasons(curve),
        "failures": {
            "judge": len(data["judge_failures"]), "cases": len(data["case_failures"]),
            "unfinished_cases": data["unfinished"],
            "judge_detail": data["judge_failures"], "case_detail": data["case_failures"],
        },
        "tokens": data["tokens"],
        "case_indices": list(data["case_indices"]),
        "scores": [list(row) for row in data["scores"]],
        **checks,
    }
    if labels is not None:
        judged = {(ci_, t + 1): data["scores"][i][t] for i, ci_ in enumerate(data["case_indices"])
                  for t in range(turns) if data["stored"][i][t]}
        a, b = metrics.paired(judged, labels)
        entry["kappa"] = {"against": labels_source, "pairs": sum(1 for x, y in zip(a, b) if x is not None and y is not None),
                          "kappa": _r(metrics.cohen_kappa(a, b)),
                          "kappa_linear": _r(metrics.cohen_kappa(a, b, weights="linear"))}
    return entry


def build_report(evaluations: Sequence[Mapping[str, Any]], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95, labels: Mapping[tuple[int, int], int | None] | None = None,
                 labels_source: str = "labels", scoring: str = "sample", judge_threshold: float = 0.75,
                 judge_check: bool = True) -> dict[str, Any]:
    """The report over loaded evaluations (see ``load_evaluation``). With
    ``labels`` ({(case, turn): score} from human raters or a second judge,
    named by ``labels_source``), each entry gets Cohen's kappa against them.
    ``judge_check`` at the top is the judge validity verdict (see ``summarize_probes``)."""
    entries = [summarize_evaluation(d, n_boot=n_boot, seed=seed, level=level, labels=labels,
                                    labels_source=labels_source, scoring=scoring, judge_threshold=judge_threshold,
                                    judge_check=judge_check) for d in evaluations]
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "judge_check": combined_check(entries, judge_threshold),
        "scoring": scoring,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": level, "over": "cases"},
        "evaluations": entries,
    }
    return report


def _fmt(x: float | None, nd: int) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _model_name(entry: Mapping[str, Any]) -> str:
    model = entry.get("model") or {}
    return str(model.get("name") or model.get("path") or model.get("kind") or "?")


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the Table 1 layout first, then intervals,
    failures, identities and token use."""
    entries = report["evaluations"]
    K = max((e["turns"] for e in entries), default=0)
    ks = [f"k={k}" for k in range(1, K + 1)]
    lines = ["# ALOE benchmark report", "", *check_lines(report)]
    lines.append("Alignment level AL(k) across the k-th turn, and improvement level (paper Table 1 layout).")
    lines.append("")
    lines.append("| Models | Type | " + " | ".join(ks) + " | Average | IR | N-IR | R2 | N-R2 |")
    lines.append("|---|---|" + "---:|" * (K + 5))
    for e in entries:
        m = mark(e)
        al = [_fmt(t["al"], 2) + m for t in e["al"]] + [""] * (K - e["turns"])
        s = e["summary"]
        lines.append(f"| {_model_name(e)} | {e['label']} | " + " | ".join(al) + f" | {_fmt(s['average'], 2)}{m} | "
                     f"{_fmt(s['ir'], 3)}{m} | {_fmt(s['n_ir'], 3)}{m} | {_fmt(s['r2'], 3)}{m} | {_fmt(s['n_r2'], 3)}{m} |")
        lines += extra_rows(e, K, _model_name(e))
    boot = report.get("bootstrap", {})
    title = (f"## {int(boot.get('level', 0.95) * 100)}% bootstrap intervals over cases "
             f"({boot.get('resamples')} resamples, seed {boot.get('seed')})")
    lines += ["", title, ""]
    lines.append("| Type | " + " | ".join(ks) + " | Average | IR |")
    lines.append("|---|" + "---:|" * (K + 2))
    for e in entries:
        m = mark(e)
        cis = [f"{_fmt(t['ci'][0], 2)}–{_fmt(t['ci'][1], 2)}{m}" for t in e["al"]] + [""] * (K - e["turns"])
        a, b = e["ci"]["average"], e["ci"]["ir"]
        lines.append(f"| {e['label']} | " + " | ".join(cis) + f" | {_fmt(a[0], 2)}–{_fmt(a[1], 2)}{m} | "
                     f"{_fmt(b[0], 3)}–{_fmt(b[1], 3)}{m} |")
    sets = [(e["label"], e["case_set"]) for e in entries if e.get("case_set")]
    if sets:
        lines += ["", "## Case sets", ""]
        lines += [f"- {label}: {describe_case_set(cs)}" for label, cs in sets]
    lines += ["", "## Cases scored per turn, and failures", ""]
    lines.append("| Type | cases | " + " | ".join(ks) + " | judge failures | failed cases | unfinished |")
    lines.append("|---|---:|" + "---:|" * (K + 3))
    for e in entries:
        ns = [str(t["n"]) for t in e["al"]] + [""] * (K - e["turns"])
        f = e["failures"]
        lines.append(f"| {e['label']} | {e['cases']} | " + " | ".join(ns) +
                     f" | {f['judge']} | {f['cases']} | {len(f['unfinished_cases'])} |")
    lines += unscored_lines(report)
    notes = [(e["label"], k, v) for e in entries for k, v in e["undefined"].items()]
    if notes:
        lines += ["", "Undefined values:", ""]
        lines += [f"- {label}: {key}: {why}" for label, key, why in notes]
    details = [(e["label"], d) for e in entries for d in e["failures"]["judge_detail"][:20]]
    if details:
        lines += ["", "Judge failures (first 20 per evaluation):", ""]
        lines += [f"- {label}: case {d['case']}, turn {d['turn']}: {d['error']}" for label, d in details]
    cdetails = [(e["label"], d) for e in entries for d in e["failures"]["case_detail"][:20]]
    if cdetails:
        lines += ["", "Failed cases:", ""]
        lines += [f"- {label}: case {d['case']} after {d['turns_done']} turn(s): {d['error']}" for label, d in cdetails]
    lines += ["", "## Models", ""]
    lines.append("| Evaluation | Type | evaluated model | user | judge | status |")
    lines.append("|---:|---|---|---|---|---|")
    for e in entries:
        lines.append(f"| {e['id']} | {e['label']} | {_ident(e['model'])} | {_ident(e['user_model'])} | "
                     f"{_ident(e['judge_model'])} | {e['status']} |")
    lines += ["", "## Token use", ""]
    lines.append("| Type | role | calls | cached | errors | prompt tokens | completion tokens |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for e in entries:
        for role, t in e["tokens"].items():
            lines.append(f"| {e['label']} | {role} | {t['calls']} | {t['cached']} | {t['errors']} | "
                         f"{t['prompt_tokens']} | {t['completion_tokens']} |")
    kappas = [e for e in entries if "kappa" in e]
    if kappas:
        lines += ["", "## Judge agreement (Cohen's kappa over the replies both rated)", ""]
        lines.append("| Type | judge vs | pairs | Cohen's kappa | linear-weighted kappa |")
        lines.append("|---|---|---:|---:|---:|")
        for e in kappas:
            k = e["kappa"]
            lines.append(f"| {e['label']} | {k['against']} | {k['pairs']} | {_fmt(k['kappa'], 3)} | "
                         f"{_fmt(k['kappa_linear'], 3)} |")
    return "\n".join(lines) + "\n"


def describe_case_set(cs: Mapping[str, Any]) -> str:
    """One line: the case set's name, its count and where it came from (files with their SHA-256)."""
    count = f"{cs.get('cases')} cases" + (f" (the first {cs['cases']} of {cs['of']})" if cs.get("of") else "")
    if cs.get("source") != "files":
        return f"{cs.get('name')}: {count} from {cs.get('db') or 'the database'} (fingerprint {cs.get('fingerprint')})"
    p, q = cs.get("profiles") or {}, cs.get("personalities") or {}
    used = (f"all {q.get('items')}" if q.get("used") == q.get("items")
            else f"the first {q.get('used')} of {q.get('items')}")
    return (f"{cs.get('name')}: {count} = {p.get('used')} profiles x {used} personalities; {p.get('file')} "
            f"sha256 {str(p.get('sha256'))[:16]}…, {q.get('file')} sha256 {str(q.get('sha256'))[:16]}… "
            f"(fingerprint {cs.get('fingerprint')})")


def _ident(ident: Mapping[str, Any]) -> str:
    keys = ("kind", "name", "path", "base_url")
    return ", ".join(f"{k}={ident[k]}" for k in keys if ident.get(k)) or "?"


def render_plot(report: Mapping[str, Any], path: str | Path, *, dpi: int = 120) -> None:
    """AL(k) over turns, one line (with its bootstrap band and dashed
    least-squares fit) per evaluation, y from 1 to 5, like Figure 4."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    K = max((e["turns"] for e in report["evaluations"]), default=1)
    n = len(report["evaluations"])
    for i, e in enumerate(report["evaluations"]):
        color = f"C{i % 10}"
        # coinciding curves stay visible: a small sideways offset, own marker and dash
        dx = (i - (n - 1) / 2) * 0.06 if n > 1 else 0.0
        ks = [t["turn"] + dx for t in e["al"] if t["al"] is not None]
        ys = [t["al"] for t in e["al"] if t["al"] is not None]
        name = f"{e['label']} ({_model_name(e)})" if e["label"] != _model_name(e) else e["label"]
        ax.plot(ks, ys, marker="osD^vP*X"[i % 8], color=color, label=name, linewidth=2,
                linestyle=("-", (0, (5, 2)), (0, (1, 1)), (0, (3, 1, 1, 1)))[i % 4])
        lo = [t["ci"][0] for t in e["al"] if t["al"] is not None]
        hi = [t["ci"][1] for t in e["al"] if t["al"] is not None]
        if ks and all(v is not None for v in lo + hi):
            ax.fill_between(ks, lo, hi, color=color, alpha=0.15, linewidth=0)
        b, a, _ = metrics.fit_line(ys, [k - dx for k in ks]) if len(ks) >= 2 else (None, None, None)
        if b is not None:
            xs = np.array([1, K], dtype=float) + dx
            ax.plot(xs, b * xs + a, linestyle="--", color=color, linewidth=1)
    ax.set_xlim(0.75, K + 0.25)
    ax.set_ylim(0.8, 5.2)    # scores are 1-5; a margin keeps a curve at 1 or 5 visible
    ax.set_xticks(range(1, K + 1))
    ax.set_xlabel("Conversation turn")
    ax.set_ylabel("Alignment level AL(k)")
    ax.set_title("ALOE: alignment level across turns")
    ax.grid(True, alpha=0.3)
    if report["evaluations"]:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(str(path), format="png")




def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and al_curve.png into ``out_dir``
    (created if needed; each file replaced atomically). Returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "al_curve.png",
             "csv": out / "scores.csv"}
    replace_atomically(paths["json"], lambda p: p.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n"))
    replace_atomically(paths["md"], lambda p: p.write_text(render_markdown(report)))
    replace_atomically(paths["png"], lambda p: render_plot(report, p))
    replace_atomically(paths["csv"], lambda p: write_scores(report, p))
    return paths


def write_scores(report: Mapping[str, Any], path: str | Path) -> None:
    """Every stored judge score, one row per (evaluation, case, turn): the
    ``case,turn,score`` columns are the labels format ``evaluation.labels``
    reads, so a copy re-scored by people gives the judge-vs-human kappa.
    An empty score is a reply the judge failed to score (or never reached)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["evaluation", "label", "case", "turn", "score"])
        for e in report["evaluations"]:
            for idx, row in zip(e["case_indices"], e["scores"]):
                for t, score in enumerate(row, start=1):
                    w.writerow([e["id"], e["label"], idx, t, "" if score is None else score])
