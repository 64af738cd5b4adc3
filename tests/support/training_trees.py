"""Hand-built preference trees in a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

from aloesim.environment.store import connect


def add_run(conn, kind: str = "generate") -> int:
    return conn.execute(
        "INSERT INTO runs (kind, config, config_hash, status, started_at) VALUES (?, ?, ?, 'complete', 0)",
        (kind, json.dumps({"k": kind}), "h"),
    ).lastrowid


def add_persona(conn, n: int) -> int:
    p = conn.execute(
        "INSERT INTO persona_items (kind, text, source, created_at) VALUES ('profile', ?, 'seed', 0)", (f"profile {n}",)
    ).lastrowid
    q = conn.execute(
        "INSERT INTO persona_items (kind, text, source, created_at) VALUES ('personality', ?, 'seed', 0)",
        (f"personality {n}",),
    ).lastrowid
    return conn.execute(
        "INSERT INTO personas (profile_id, personality_id, created_at) VALUES (?, ?, 0)", (p, q)
    ).lastrowid


def add_tree(conn, run_id: int, persona_id: int, *, mode: str = "path", turns: int = 3, status: str = "complete") -> int:
    return conn.execute(
        "INSERT INTO trees (run_id, persona_id, mode, turns, seed, status, created_at) VALUES (?, ?, ?, ?, 0, ?, 0)",
        (run_id, persona_id, mode, turns, status),
    ).lastrowid


def add_node(conn, tree_id: int, branch: str, continued: str, *, parent: int | None, tag: str = "") -> int:
    b = branch or "root"
    return conn.execute(
        "INSERT INTO nodes (tree_id, parent_id, turn, branch, user_message, inferred_profile, "
        "inferred_personalities, preferred, rejected, continued, created_at) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, 0)",
        (tree_id, parent, len(branch) + 1, branch, f"m[{tag}{b}]", f"p[{tag}{b}]", f"r[{tag}{b}]", continued),
    ).lastrowid


def build_db(path: Path) -> dict[str, int]:
    """Run 1: a complete 3-turn path tree ('' -> p -> pr, turn 2 continued the
    rejected reply), a complete 2-turn full tree ('' both -> p, r), and a failed
    tree. Run 2: one complete 1-turn tree."""
    conn = connect(path, create=True)
    conn.execute("BEGIN IMMEDIATE")
    run1 = add_run(conn)
    t_path = add_tree(conn, run1, add_persona(conn, 1))
    n1 = add_node(conn, t_path, "", "preferred", parent=None)
    n2 = add_node(conn, t_path, "p", "rejected", parent=n1)
    add_node(conn, t_path, "pr", "preferred", parent=n2)
    t_full = add_tree(conn, run1, add_persona(conn, 2), mode="full", turns=2)
    f1 = add_node(conn, t_full, "", "both", parent=None, tag="F")
    # inserted out of order on purpose: export order must not depend on insertion
    add_node(conn, t_full, "r", "both", parent=f1, tag="F")
    add_node(conn, t_full, "p", "both", parent=f1, tag="F")
    t_failed = add_tree(conn, run1, add_persona(conn, 3), status="failed")
    add_node(conn, t_failed, "", "preferred", parent=None, tag="X")
    run2 = add_run(conn)
    t_other = add_tree(conn, run2, add_persona(conn, 4), turns=1)
    add_node(conn, t_other, "", "preferred", parent=None, tag="O")
    conn.execute("COMMIT")
    conn.close()
    return {"run1": run1, "run2": run2, "t_path": t_path, "t_full": t_full, "t_failed": t_failed, "t_other": t_other}
