"""``aloe runs``: the runs recorded in a database, side by side.

    aloe runs db=aloe.db                   # a table (rich on a terminal, plain text otherwise)
    aloe runs db=aloe.db kind=generate     # only generate runs
    aloe runs db=aloe.db format=json       # one JSON list, for scripts

Per run: kind, status, the config keys whose values differ between the
listed runs of the same kind, trees by status, nodes, LLM calls, tokens,
retries, failed calls, and wall time (of the last invocation, from the
run's stats, and first start to last finish). Counts are live queries, so
a run still growing (or killed) shows what is committed now. The database
is opened read-only.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections import defaultdict
from typing import Any

from omegaconf import DictConfig

from ...core import to_settings
from ...core.errors import StoreError
from ...environment.store import connect
from .._runs import config_differences
from .._schemas import RunsConfig

HELP = "list the runs of db with config differences, trees, nodes, calls, tokens, failures and wall time"

# keys that differ between runs for reasons that say nothing about what they produced
_HIDDEN = ("db", "log.")


def _json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _open(db: str) -> sqlite3.Connection:
    """Read-only; a database of an older schema version is migrated first, as every command does."""
    try:
        return connect(db, readonly=True)
    except StoreError as exc:
        if "is older" not in exc.reason:
            raise
    connect(db).close()
    return connect(db, readonly=True)


def list_runs(db: str, kind: str | None = None) -> list[dict[str, Any]]:
    """One dict per run (oldest first) with its counts and config differences."""
    conn = _open(db)
    try:
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        runs = conn.execute(f"SELECT * FROM runs {where} ORDER BY id", params).fetchall()
        trees: dict[int, dict[str, int]] = defaultdict(dict)
        for r in conn.execute("SELECT run_id, status, COUNT(*) FROM trees GROUP BY run_id, status"):
            trees[r[0]][r[1]] = r[2]
        nodes = {r[0]: r[1] for r in conn.execute(
            "SELECT t.run_id, COUNT(*) FROM nodes n JOIN trees t ON t.id = n.tree_id GROUP BY t.run_id")}
        calls = {r["run_id"]: r for r in conn.execute(
            "SELECT run_id, COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens), 0) AS completion_tokens,"
            " COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) AS retries,"
            " COALESCE(SUM(error IS NOT NULL), 0) AS call_failures, COALESCE(SUM(cached), 0) AS cached"
            " FROM llm_calls GROUP BY run_id")}
    finally:
        conn.close()

    configs = {r["id"]: _json(r["config"]) for r in runs}
    differences: dict[int, dict[str, Any]] = {}
    by_kind: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in runs:
        by_kind[r["kind"]][r["id"]] = configs[r["id"]]
    for group in by_kind.values():
        for rid, diff in config_differences(group).items():
            differences[rid] = {k: v for k, v in diff.items() if not k.startswith(_HIDDEN) and k not in _HIDDEN}

    out = []
    now = time.time()
    for r in runs:
        rid = r["id"]
        c = calls.get(rid)
        stats = _json(r["stats"])
        end = r["finished_at"] if r["finished_at"] is not None else now
        out.append({
            "id": rid,
            "kind": r["kind"],
            "status": r["status"],
            "config_hash": r["config_hash"],
            "differences": differences.get(rid, {}),
            "trees": dict(sorted(trees.get(rid, {}).items())),
            "nodes": nodes.get(rid, 0),
            "llm_calls": c["calls"] if c else 0,
            "prompt_tokens": c["prompt_tokens"] if c else 0,
            "completion_tokens": c["completion_tokens"] if c else 0,
            "retries": c["retries"] if c else 0,
            "call_failures": c["call_failures"] if c else 0,
            "cached_calls": c["cached"] if c else 0,
            "wall_s": stats.get("wall_s"),
            "span_s": round(end - r["started_at"], 2),
            "started_at": r["started_at"],
            "finished_at": r["finished_at"],
            "stats": stats,
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


def _wall_text(run: dict[str, Any]) -> str:
    wall = run["wall_s"]
    return f"{wall:g} s" if wall is not None else f"({run['span_s']:g} s)"


COLUMNS = ("run", "kind", "status", "trees", "nodes", "calls", "tokens", "retries", "failed calls", "wall",
           "config differences")


def rows(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(str(r["id"]), r["kind"], r["status"], _trees_text(r["trees"]), str(r["nodes"]), str(r["llm_calls"]),
             str(r["prompt_tokens"] + r["completion_tokens"]), str(r["retries"]), str(r["call_failures"]),
             _wall_text(r), _diff_text(r["differences"])) for r in runs]


def plain_table(runs: list[dict[str, Any]]) -> str:
    """Fixed-width text, one line per run (for pipes and logs)."""
    table = [COLUMNS, *rows(runs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table]
    return "\n".join(line.rstrip() for line in lines)


def rich_table(runs: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="runs", header_style="bold")
    for name in COLUMNS:
        table.add_column(name, justify="right" if name in ("run", "nodes", "calls", "tokens", "retries",
                                                           "failed calls") else "left",
                         overflow="fold")
    style = {"complete": "green", "failed": "red", "running": "yellow"}
    for run, row in zip(runs, rows(runs)):
        table.add_row(*row, style=style.get(run["status"]))
    return table


def run(cfg: DictConfig) -> int:
    c: RunsConfig = to_settings(cfg, RunsConfig)
    fmt, kind = c.format, c.kind
    runs = list_runs(str(cfg.db), kind)
    if fmt == "json":
        print(json.dumps(runs, ensure_ascii=False))
    elif not runs:
        print(f"no runs in {cfg.db}")
    elif sys.stdout.isatty():
        from rich.console import Console

        Console().print(rich_table(runs))
    else:
        print(plain_table(runs))
    return 0
