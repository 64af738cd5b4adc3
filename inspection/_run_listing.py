"""``aloe runs``' listing: the runs recorded in a database, side by side.

Per run: kind, status, the config keys whose values differ between the
listed runs of the same kind, trees by status, nodes, LLM calls, tokens,
retries, failed calls, dollars, the in-flight limit each backend ended on
(``limit``: ``12/32`` = adaptive, at 12 of its ceiling 32; from the run's
``stats.limits``, written when the run ends) and wall time (the sum of the
run's invocations', counted up to the last heartbeat of one still running
or killed). A run left 'running' by a process that is gone shows as
'interrupted'. Counts are live queries, so a run still growing (or killed)
shows what is committed now. The database is opened read-only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from aloesim.core import json_safe, terminal_safe
from aloesim.environment.store import (
    Calls,
    CallTotals,
    Runs,
    Trees,
    dollars_text,
    open_readonly,
    shown_status,
)

from ._summaries import wall_text
from .show import config_differences

__all__ = ["limit_text", "list_run_rows", "runs_listing", "runs_plain_table", "runs_rich_table"]

# keys that differ between runs for reasons that say nothing about what they produced
_HIDDEN = ("db", "log.")


def list_run_rows(db: str, kind: str | None = None) -> list[dict[str, Any]]:
    """One dict per run (oldest first) with its counts and config differences.

    ``status`` is the run's status as ``shown_status`` reads it (a run left
    'running' by a process that is gone is 'interrupted'); ``wall_s`` is the
    run's wall time, summed over its invocations."""
    conn = open_readonly(db)
    try:
        runs, leases = Runs(conn).all(kind), Runs(conn).leases()
        trees, nodes = Trees(conn).status_counts(), Trees(conn).node_counts()
        calls = Calls(conn).totals_by_run()
    finally:
        conn.close()

    differences: dict[int, dict[str, Any]] = {}
    by_kind: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in runs:
        by_kind[r.kind][r.id] = r.config if isinstance(r.config, dict) else {}
    for group in by_kind.values():
        for rid, diff in config_differences(group).items():
            differences[rid] = {k: v for k, v in diff.items() if not k.startswith(_HIDDEN) and k not in _HIDDEN}

    out = []
    for r in runs:
        c = calls.get(r.id, CallTotals())
        out.append({
            "id": r.id,
            "kind": r.kind,
            "status": shown_status(r, leases.get(r.id)),
            "config_hash": r.config_hash,
            "differences": differences.get(r.id, {}),
            "trees": dict(sorted(trees.get(r.id, {}).items())),
            "nodes": nodes.get(r.id, 0),
            "llm_calls": c.calls,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "retries": c.retries,
            "call_failures": c.failures,
            "cached_calls": c.cached,
            "cost_usd": c.cost_usd if c.calls else 0.0,  # null: no call had a known price
            "unpriced_calls": c.unpriced,
            "wall_s": round(r.wall_s, 2),
            "invocations": r.invocations,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "stats": r.stats if isinstance(r.stats, dict) else {},
        })
    return out


def _trees_text(trees: dict[str, int]) -> str:
    if not trees:
        return "-"
    total = sum(trees.values())
    parts = [f"{trees[s]} {s}" for s in ("complete", "failed", "running", "pending") if trees.get(s)]
    return f"{total}: " + ", ".join(parts)


def _diff_text(diff: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in diff.items()) or "-"


def limit_text(stats: dict[str, Any]) -> str:
    """Where each backend's in-flight limit ended: ``12/32`` adaptive (of its ceiling), ``8`` fixed."""
    out = []
    for b in stats.get("limits") or []:
        if isinstance(b, dict) and isinstance(b.get("limit"), int):
            out.append(f"{b['limit']}/{b.get('max')}" if b.get("adaptive") else str(b["limit"]))
    return " ".join(out) or "-"


_COLUMNS = ("run", "kind", "status", "trees", "nodes", "calls", "tokens", "dollars", "retries", "failed calls",
            "limit", "wall", "config differences")


def _rows(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The table's cells, terminal-safe (config values come from the database)."""
    return [tuple(terminal_safe(cell) for cell in row) for row in _cells(runs)]


def _cells(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(str(r["id"]), r["kind"], r["status"], _trees_text(r["trees"]), str(r["nodes"]), str(r["llm_calls"]),
             str(r["prompt_tokens"] + r["completion_tokens"]), dollars_text(r["cost_usd"], r["unpriced_calls"]),
             str(r["retries"]), str(r["call_failures"]), limit_text(r["stats"]),
             wall_text(r["wall_s"]), _diff_text(r["differences"])) for r in runs]


def runs_plain_table(runs: list[dict[str, Any]]) -> str:
    """Fixed-width text, one line per run (for pipes and logs)."""
    table = [_COLUMNS, *_rows(runs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table]
    return "\n".join(line.rstrip() for line in lines)


def runs_rich_table(runs: list[dict[str, Any]]) -> Any:
    """A rich table of the runs (for a terminal), one colour per status."""
    from rich.table import Table

    table = Table(title="runs", header_style="bold")
    for name in _COLUMNS:
        table.add_column(name, justify="right" if name in ("run", "nodes", "calls", "tokens", "dollars", "retries",
                                                           "failed calls", "limit") else "left",
                         overflow="fold")
    style = {"complete": "green", "failed": "red", "running": "yellow", "interrupted": "magenta"}
    for run, row in zip(runs, _rows(runs)):
        table.add_row(*row, style=style.get(run["status"]))
    return table


def runs_listing(db: str, kind: str | None = None, *, fmt: str = "table", terminal: bool = False) -> Any:
    """What ``aloe runs`` prints: one JSON list (``fmt="json"``), a line saying
    the database has no runs, a rich table on a terminal, or plain text."""
    runs = list_run_rows(db, kind)
    if fmt == "json":
        return json_safe(json.dumps(runs, ensure_ascii=False))
    if not runs:
        return f"no runs in {db}"
    return runs_rich_table(runs) if terminal else runs_plain_table(runs)
