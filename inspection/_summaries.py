"""End-of-command summaries for people: what a long command made, where it
is, and, for each kind of failure, the next step to take.

The rule (one for every long command): on a terminal (stdout is a TTY) the
command prints these lines, then its JSON line; piped or redirected it
prints the JSON line only, so a script reads one JSON value (the last line
of stdout either way). The lines are built from the read side's view models
(``RunView``, ``EvaluationView``), read back from the database the command
just wrote, and every text in them is terminal-safe.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from aloesim.core import terminal_safe
from aloesim.environment.store import open_readonly

from .show import load_evaluation, load_run

__all__ = ["end_of_command", "evaluate_lines", "generate_lines", "personas_lines", "wall_text"]

_ERROR_CHARS = 160  # of the first failure's error, quoted in a summary line


def wall_text(seconds: float | None) -> str:
    """A wall time the one way the read side shows it: seconds with two decimals."""
    return "-" if seconds is None else f"{seconds:,.2f} s"


def end_of_command(json_line: str, lines: Callable[[], list[str]], *, out: IO[str] | None = None) -> None:
    """Print a command's end: on a terminal the human ``lines()`` first, then
    the JSON line; otherwise the JSON line only (``lines`` is not called)."""
    out = out if out is not None else sys.stdout
    if out.isatty():
        try:
            text = lines()
        except Exception as exc:  # noqa: BLE001 -- a summary never hides the result: the JSON line follows
            text = [f"(no summary: {type(exc).__name__}: {exc})"]
        for line in text:
            print(terminal_safe(line), file=out)
    print(json_line, file=out, flush=True)


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _counts(by_status: Mapping[str, int], order: tuple[str, ...]) -> str:
    parts = [f"{by_status[s]:,} {s}" for s in order if by_status.get(s)]
    parts += [f"{n:,} {s}" for s, n in sorted(by_status.items()) if s not in order and n]
    return ", ".join(parts) or "none"


def generate_lines(db: str, stats: Mapping[str, Any]) -> list[str]:
    """``aloe generate``'s summary: the run's trees, nodes, calls and time, where
    to look, and what to do about failed trees and calls."""
    conn = open_readonly(db)
    try:
        run = load_run(conn, int(stats["run_id"]), calls=False, samples=1)
    finally:
        conn.close()
    if run is None:
        return []
    tokens = int(stats.get("prompt_tokens", 0)) + int(stats.get("completion_tokens", 0))
    lines = [
        f"run #{run.id} (generate) {run.status} in {wall_text(run.wall_s)}: {run.trees:,} trees "
        f"({_counts(run.trees_by_status, ('complete', 'failed', 'running', 'pending'))}), {run.nodes:,} nodes, "
        f"{int(stats.get('llm_calls', 0)):,} LLM calls, {tokens:,} tokens"
        + (" (resumed)" if stats.get("resumed") else ""),
        (f"stored in {db}: `aloe show db={db} run={run.id}` lists its trees, `aloe show db={db} tree=ID` shows one, "
        f"`aloe view db={db}` opens them in a browser, `aloe export db={db}` writes the training files"),
    ]
    failed = run.trees_by_status.get("failed", 0)
    if failed:
        first = f" (first: tree #{run.failed_trees[0][0]}: {_short(run.failed_trees[0][1])})" \
            if run.failed_trees else ""
        lines.append(f"{failed:,} tree{'s' if failed != 1 else ''} failed{first}: once the cause is fixed, "
                     "re-run the same command with retry_failed=true")
    unfinished = run.trees_by_status.get("pending", 0) + run.trees_by_status.get("running", 0)
    if unfinished:
        lines.append(f"{unfinished:,} trees not finished: run the same command again to continue them")
    if stats.get("call_failures"):
        lines.append(f"{int(stats['call_failures']):,} LLM calls failed after their retries: "
                     f"`aloe show db={db} run={run.id}` lists them")
    return lines


def evaluate_lines(db: str, summary: Mapping[str, Any]) -> list[str]:
    """``aloe evaluate``'s summary: AL, IR, cases, where the report is, and what
    to do about failed cases, unscored replies and a judge that failed its check."""
    conn = open_readonly(db)
    try:
        ev = load_evaluation(conn, int(summary["evaluation_id"]))
    finally:
        conn.close()
    if ev is None:
        return []
    ir, r2 = ev.improvement
    fit = "IR n/a" if ir is None else f"IR {ir:.3f}" + ("" if r2 is None else f" (R² {r2:.2f})")
    average = "n/a" if ev.average is None else f"{ev.average:.2f}"
    lines = [
        (f"evaluation #{ev.id} ({ev.label}) {ev.status} in {wall_text(summary.get('wall_s'))}: {ev.cases:,} cases "
        f"({_counts(ev.cases_by_status, ('complete', 'failed', 'running', 'pending'))}) x {ev.turns} turns; "
        f"average AL {average}, {fit}"),
    ]
    report = summary.get("report") or {}
    if report:
        lines.append("report: " + ", ".join(str(p) for p in report.values()))
    lines.append(f"`aloe show db={db} evaluation={ev.id}` shows it with its cases (show.calls=true: the judge's "
                 f"prompts and replies), `aloe view db={db}` in a browser")
    failed = int(summary.get("failed_cases") or 0)
    if failed:
        lines.append(f"{failed:,} case{'s' if failed != 1 else ''} failed: once the cause is fixed, re-run the "
                     "same command to continue them")
    if summary.get("judge_failures"):
        lines.append(f"{int(summary['judge_failures']):,} replies the judge could not score: "
                     f"`aloe show db={db} evaluation={ev.id} show.calls=true` shows its raw replies")
    if summary.get("judge_reliable") is False:
        lines.append("the judge failed its check: treat these scores as unreliable (report.md says why)")
    return lines


def personas_lines(db: str, summary: Mapping[str, Any]) -> list[str]:
    """``aloe personas``' summary: what the action added, made or wrote, and its notices."""
    action = summary.get("action")
    lines: list[str] = []
    if action == "import":
        lines.append(f"imported into {db}: {int(summary.get('profiles_kept', 0)):,} profiles and "
                     f"{int(summary.get('personalities_kept', 0)):,} personalities kept")
    elif action == "grow":
        lines.append(f"run #{summary.get('run_id')} (personas): the train pools of {db} hold "
                     f"{int(summary.get('profiles', 0)):,} profiles and {int(summary.get('personalities', 0)):,} "
                     "personalities")
        lines += [f"  {_grow_line(summary[k])}" for k in ("profile", "personality") if isinstance(summary.get(k), dict)]
    elif action == "export":
        lines.append(f"wrote the {summary.get('split')} pools of {db} to {summary.get('dir')}")
    elif action == "stats":
        return []  # the statistics are the JSON itself
    pairs = summary.get("pairs")
    if isinstance(pairs, dict):
        lines.append("personas: " + ", ".join(
            f"{p.get('total', 0):,} {split} (+{p.get('added', 0):,}, target {p.get('target', 0):,})"
            for split, p in pairs.items() if isinstance(p, dict)))
    lines += [f"notice: {n}" for n in summary.get("notices") or []]
    if action in ("import", "grow", "pair"):
        lines.append(f"next: `aloe generate db={db}` grows preference trees for the train personas")
    return lines


def _grow_line(report: Mapping[str, Any]) -> str:
    return str(report.get("outcome") or f"{report.get('kind')}: {report.get('added', 0)} added")
