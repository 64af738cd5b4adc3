"""The queries behind the quality checks (``aloesim.environment.quality``):
one run's nodes with their persona, the calls that produced them, and what
a report says about the run. Parameterized SQL only, no string building.

Node and call rows come ordered by tree id so a caller can merge the two
streams one tree at a time. ``max_tree_id`` bounds the trees read (the
viewer checks a run's first trees only); ``None`` reads them all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

NO_LIMIT = (1 << 63) - 1

_NODES_SQL = """
SELECT n.id, n.tree_id, n.parent_id, n.turn, n.branch, n.user_message, n.inferred_profile,
       n.inferred_personalities, n.preferred, n.rejected, n.continued, n.judge,
       t.run_id, t.status AS tree_status, t.persona_id, a.text AS profile, b.text AS personality
FROM trees t
JOIN nodes n ON n.tree_id = t.id
JOIN personas p ON p.id = t.persona_id
JOIN persona_items a ON a.id = p.profile_id
JOIN persona_items b ON b.id = p.personality_id
WHERE t.run_id = ? AND (? OR t.status = 'complete') AND t.id <= ?
ORDER BY n.tree_id, n.turn, n.branch
"""

# The roles whose replies make a node; the preference judge's calls are not joined.
_CALLS_SQL = """
SELECT c.tree_id, c.turn, c.branch, c.role, c.completion_tokens, c.finish_reason, c.id,
       json_extract(c.request, '$.max_tokens') AS max_tokens
FROM trees t JOIN llm_calls c ON c.tree_id = t.id
WHERE t.run_id = ? AND (? OR t.status = 'complete') AND t.id <= ?
  AND c.error IS NULL AND c.role IN ('user', 'inducer', 'preferred', 'rejected')
ORDER BY c.tree_id, c.id
"""

# The same, for a database from before llm_calls.finish_reason existed: every finish is unknown.
_CALLS_SQL_NO_FINISH = """
SELECT c.tree_id, c.turn, c.branch, c.role, c.completion_tokens, NULL AS finish_reason, c.id,
       json_extract(c.request, '$.max_tokens') AS max_tokens
FROM trees t JOIN llm_calls c ON c.tree_id = t.id
WHERE t.run_id = ? AND (? OR t.status = 'complete') AND t.id <= ?
  AND c.error IS NULL AND c.role IN ('user', 'inducer', 'preferred', 'rejected')
ORDER BY c.tree_id, c.id
"""


def run_prompt(conn: sqlite3.Connection, run_id: int, role: str) -> str | None:
    """The prompt template ``role`` used in a run (from its stored config), or None."""
    row = conn.execute("SELECT json_extract(config, '$.prompts.' || ?) FROM runs WHERE id = ?", (role, run_id)).fetchone()
    return row[0] if row and isinstance(row[0], str) else None


def has_finish_reason(conn: sqlite3.Connection) -> bool:
    """Whether ``llm_calls`` records each call's ``finish_reason`` (schema of its migration)."""
    return any(row[1] == "finish_reason" for row in conn.execute("PRAGMA table_info(llm_calls)"))


def run_row(conn: sqlite3.Connection, run_id: int) -> sqlite3.Row | None:
    """The run's id, kind, status and config (JSON text), or None."""
    return conn.execute("SELECT id, kind, status, config, started_at, finished_at FROM runs WHERE id = ?",
                        (run_id,)).fetchone()


def generate_run_ids(conn: sqlite3.Connection) -> list[int]:
    """Ids of the generate runs, oldest first."""
    return [r[0] for r in conn.execute("SELECT id FROM runs WHERE kind = 'generate' ORDER BY id")]


def trees_by_status(conn: sqlite3.Connection, run_id: int) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute(
        "SELECT status, COUNT(*) FROM trees WHERE run_id = ? GROUP BY status ORDER BY status", (run_id,))}


def nth_tree_id(conn: sqlite3.Connection, run_id: int, n: int) -> int | None:
    """The id of the run's n-th tree (1-based, by id), or None when it has fewer."""
    row = conn.execute("SELECT id FROM trees WHERE run_id = ? ORDER BY id LIMIT 1 OFFSET ?",
                       (run_id, n - 1)).fetchone()
    return None if row is None else int(row[0])


def nodes_version(conn: sqlite3.Connection, run_id: int) -> tuple[int, tuple[tuple[str, int], ...]] | None:
    """A cheap key that changes whenever a node is committed anywhere or a tree of the run
    changes status: (newest node id, the run's trees by status); None when the run has no node."""
    if conn.execute("SELECT 1 FROM trees t JOIN nodes n ON n.tree_id = t.id WHERE t.run_id = ? LIMIT 1",
                    (run_id,)).fetchone() is None:
        return None
    newest = conn.execute("SELECT MAX(id) FROM nodes").fetchone()[0]
    return int(newest), tuple(trees_by_status(conn, run_id).items())


def iter_node_rows(conn: sqlite3.Connection, run_id: int, *, include_incomplete: bool,
                   max_tree_id: int | None = None) -> Iterator[sqlite3.Row]:
    """The run's nodes (with tree status and persona texts), by tree, turn, branch."""
    yield from conn.execute(_NODES_SQL, (run_id, int(include_incomplete), max_tree_id or NO_LIMIT))


def iter_call_rows(conn: sqlite3.Connection, run_id: int, *, include_incomplete: bool,
                   max_tree_id: int | None = None) -> Iterator[sqlite3.Row]:
    """Successful user/inducer/preferred/rejected calls of the run's trees, by tree then call id, with
    the ``max_tokens`` they asked for; ``finish_reason`` is NULL where unknown (never recorded, or a
    database from before it was)."""
    sql = _CALLS_SQL if has_finish_reason(conn) else _CALLS_SQL_NO_FINISH
    yield from conn.execute(sql, (run_id, int(include_incomplete), max_tree_id or NO_LIMIT))


def tree_run_ids(conn: sqlite3.Connection) -> list[int]:
    """Ids of the runs that own trees, oldest first."""
    return [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM trees ORDER BY run_id")]
