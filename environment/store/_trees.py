"""SQL for runs, trees and nodes (parameterized, used inside writer ops or
with a read connection)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from .._types import InferredPersona, Node, Persona, PreferenceCheck


def node_from_row(row: sqlite3.Row) -> Node:
    return Node(
        tree_id=row["tree_id"], turn=row["turn"], branch=row["branch"], user_message=row["user_message"],
        inferred=InferredPersona(row["inferred_profile"], row["inferred_personalities"]),
        preferred=row["preferred"], rejected=row["rejected"], continued=row["continued"],
        judge=PreferenceCheck.from_dict(json.loads(row["judge"])) if row["judge"] else None,
        id=row["id"], parent_id=row["parent_id"],
    )


def insert_node(conn: sqlite3.Connection, node: Node) -> int:
    """Insert a node (idempotent on (tree_id, branch)); returns its id."""
    parent_id = None
    if node.branch:
        r = conn.execute("SELECT id FROM nodes WHERE tree_id = ? AND branch = ?", (node.tree_id, node.branch[:-1])).fetchone()
        if r is None:
            raise ValueError(f"tree {node.tree_id}: parent of branch {node.branch!r} is not committed")
        parent_id = r[0]
    conn.execute(
        "INSERT OR IGNORE INTO nodes (tree_id, parent_id, turn, branch, user_message, inferred_profile,"
        " inferred_personalities, preferred, rejected, continued, judge, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (node.tree_id, parent_id, node.turn, node.branch, node.user_message, node.inferred.profile,
         node.inferred.personalities, node.preferred, node.rejected, node.continued,
         json.dumps(node.judge.as_dict()) if node.judge is not None else None, time.time()),
    )
    return conn.execute("SELECT id FROM nodes WHERE tree_id = ? AND branch = ?", (node.tree_id, node.branch)).fetchone()[0]


def persona_from_row(row: sqlite3.Row) -> Persona:
    return Persona(id=row["id"], profile=row["profile"], personality=row["personality"], split=row["split"])


PERSONAS_SQL = (
    "SELECT p.id, p.split, a.text AS profile, b.text AS personality FROM personas p"
    " JOIN persona_items a ON a.id = p.profile_id JOIN persona_items b ON b.id = p.personality_id"
)


def create_run(conn: sqlite3.Connection, kind: str, config: dict[str, Any], config_hash: str) -> int:
    return conn.execute(
        "INSERT INTO runs (kind, config, config_hash, status, started_at) VALUES (?,?,?, 'running', ?)",
        (kind, json.dumps(config, sort_keys=True), config_hash, time.time()),
    ).lastrowid


def finish_run(conn: sqlite3.Connection, run_id: int, status: str, stats: dict[str, Any]) -> None:
    conn.execute("UPDATE runs SET status = ?, finished_at = ?, stats = ? WHERE id = ?",
                 (status, time.time(), json.dumps(stats, sort_keys=True), run_id))
