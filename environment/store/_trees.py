"""Trees: every statement on ``trees``, ``nodes`` and ``events``."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._types import InferredPersona, Node, Persona, PreferenceCheck
from ._personas import PERSONA_TEXTS
from ._rows import loads, row_as

__all__ = ["EventRecord", "NodeRecord", "TreeListing", "TreeRecord", "Trees"]

_TREE_COLS = "t.id, t.run_id, t.persona_id, t.mode, t.turns, t.seed, t.status, t.error, t.created_at, t.finished_at"
_NODE_COLS = ("id, tree_id, parent_id, turn, branch, user_message, inferred_profile, inferred_personalities,"
              " preferred, rejected, continued, judge, created_at")


@dataclass(frozen=True, slots=True)
class TreeRecord:
    id: int
    run_id: int
    persona_id: int
    mode: str
    turns: int
    seed: int
    status: str
    error: str | None
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class TreeListing:
    """A tree as a page lists it: with its persona's texts."""

    id: int
    persona_id: int
    profile: str
    personality: str
    mode: str
    turns: int
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One ``nodes`` row as stored (``judge`` parsed; the text when not JSON)."""

    id: int
    tree_id: int
    parent_id: int | None
    turn: int
    branch: str
    user_message: str
    inferred_profile: str | None
    inferred_personalities: str | None
    preferred: str
    rejected: str
    continued: str
    judge: Any
    created_at: float

    def node(self) -> Node:
        return Node(tree_id=self.tree_id, turn=self.turn, branch=self.branch, user_message=self.user_message,
                    inferred=InferredPersona(self.inferred_profile, self.inferred_personalities),
                    preferred=self.preferred, rejected=self.rejected, continued=self.continued,  # type: ignore[arg-type]
                    judge=PreferenceCheck.from_dict(self.judge) if isinstance(self.judge, dict) else None,
                    id=self.id, parent_id=self.parent_id)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    kind: str
    payload: str
    created_at: float


def _node(row: sqlite3.Row) -> NodeRecord:
    return row_as(NodeRecord, row, judge=loads(row["judge"]))


def _tree_filter(run_id: int, q: str, status: str) -> tuple[str, list[Any]]:
    """FROM/WHERE of a run's trees, filtered by persona text (LIKE) and status."""
    where, params = ["t.run_id = ?"], [run_id]
    if q:
        pat = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(pa.text LIKE ? ESCAPE '\\' OR pb.text LIKE ? ESCAPE '\\')")
        params += [pat, pat]
    if status:
        where.append("t.status = ?")
        params.append(status)
    return (f" FROM trees t JOIN personas p ON p.id = t.persona_id {PERSONA_TEXTS} WHERE "
            + " AND ".join(where)), params


class Trees:
    """Every statement on ``trees``, ``nodes`` and ``events``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- a run's trees -------------------------------------------------------
    def add(self, run_id: int, trees: Sequence[tuple[int, str, int, int]]) -> None:
        """Plan ``(persona id, mode, turns, seed)`` trees for a run (a tree already planned stays)."""
        t = time.time()
        self.conn.executemany("INSERT OR IGNORE INTO trees (run_id, persona_id, mode, turns, seed, status, created_at)"
                              " VALUES (?, ?, ?, ?, ?, 'pending', ?)", [(run_id, *tree, t) for tree in trees])

    def of_run(self, run_id: int, statuses: Sequence[str] | None = None) -> list[TreeRecord]:
        """A run's trees by id, only those of ``statuses`` when given."""
        if statuses is None:
            rows = self.conn.execute(f"SELECT {_TREE_COLS} FROM trees t WHERE t.run_id = ? ORDER BY t.id", (run_id,))
        else:
            q = ",".join("?" * len(statuses))
            rows = self.conn.execute(f"SELECT {_TREE_COLS} FROM trees t WHERE t.run_id = ? AND t.status IN ({q})"
                                     " ORDER BY t.id", (run_id, *statuses))
        return [row_as(TreeRecord, r) for r in rows]

    def start(self, tree_id: int) -> None:
        self.conn.execute("UPDATE trees SET status = 'running', error = NULL WHERE id = ?", (tree_id,))

    def complete(self, tree_id: int) -> None:
        self.conn.execute("UPDATE trees SET status = 'complete', finished_at = ? WHERE id = ?", (time.time(), tree_id))

    def fail(self, tree_id: int, reason: str) -> None:
        self.conn.execute("UPDATE trees SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
                          (reason, time.time(), tree_id))

    def take_state(self, tree_id: int, status: str, error: str | None, finished_at: float | None) -> None:
        """Copy another database's later state of the same tree (``aloe merge``)."""
        self.conn.execute("UPDATE trees SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                          (status, error, finished_at, tree_id))

    def status_counts(self, run_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
        """``{run id: {status: trees}}`` of the given runs (of every run when None)."""
        out: dict[int, dict[str, int]] = {i: {} for i in run_ids or ()}
        if run_ids is None:
            rows = self.conn.execute("SELECT run_id, status, COUNT(*) FROM trees GROUP BY run_id, status")
        elif not run_ids:
            return out
        else:
            q = ",".join("?" * len(run_ids))
            rows = self.conn.execute(f"SELECT run_id, status, COUNT(*) FROM trees WHERE run_id IN ({q})"
                                     " GROUP BY run_id, status", list(run_ids))
        for run_id, status, n in rows:
            out.setdefault(run_id, {})[status] = n
        return out

    def node_counts(self, run_id: int | None = None) -> dict[int, int]:
        """``{run id: nodes}`` of one run (of every run when None)."""
        if run_id is None:
            rows = self.conn.execute("SELECT t.run_id, COUNT(*) FROM nodes n JOIN trees t ON t.id = n.tree_id"
                                     " GROUP BY t.run_id")
        else:
            rows = self.conn.execute("SELECT t.run_id, COUNT(*) FROM nodes n JOIN trees t ON t.id = n.tree_id"
                                     " WHERE t.run_id = ? GROUP BY t.run_id", (run_id,))
        return {r[0]: r[1] for r in rows}

    def failed(self, run_id: int, limit: int) -> list[tuple[int, str | None]]:
        """The first ``limit`` failed trees of a run: (tree id, error)."""
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT id, error FROM trees WHERE run_id = ? AND status = 'failed' ORDER BY id LIMIT ?", (run_id, limit))]

    def count_all(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM trees").fetchone()[0]

    # -- one tree ------------------------------------------------------------
    def get(self, tree_id: int) -> tuple[TreeRecord, Persona] | None:
        """A tree with its persona."""
        row = self.conn.execute(
            f"SELECT {_TREE_COLS}, p.split AS persona_split, pa.text AS profile, pb.text AS personality"
            f" FROM trees t JOIN personas p ON p.id = t.persona_id {PERSONA_TEXTS} WHERE t.id = ?",
            (tree_id,)).fetchone()
        if row is None:
            return None
        return row_as(TreeRecord, row), Persona(row["persona_id"], row["profile"], row["personality"],
                                                row["persona_split"])

    def node_records(self, tree_id: int) -> list[NodeRecord]:
        return [_node(r) for r in self.conn.execute(
            f"SELECT {_NODE_COLS} FROM nodes WHERE tree_id = ? ORDER BY turn, branch", (tree_id,))]

    def nodes(self, tree_id: int) -> list[Node]:
        """A tree's committed nodes, as the environment grows them."""
        return [r.node() for r in self.node_records(tree_id)]

    def insert_node(self, node: Node) -> int:
        """Insert a node (idempotent on (tree_id, branch)); returns its id."""
        parent_id = None
        if node.branch:
            r = self.conn.execute("SELECT id FROM nodes WHERE tree_id = ? AND branch = ?",
                                  (node.tree_id, node.branch[:-1])).fetchone()
            if r is None:
                raise ValueError(f"tree {node.tree_id}: parent of branch {node.branch!r} is not committed")
            parent_id = r[0]
        self.conn.execute(
            "INSERT OR IGNORE INTO nodes (tree_id, parent_id, turn, branch, user_message, inferred_profile,"
            " inferred_personalities, preferred, rejected, continued, judge, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (node.tree_id, parent_id, node.turn, node.branch, node.user_message, node.inferred.profile,
             node.inferred.personalities, node.preferred, node.rejected, node.continued,
             json.dumps(node.judge.as_dict()) if node.judge is not None else None, time.time()),
        )
        return self.conn.execute("SELECT id FROM nodes WHERE tree_id = ? AND branch = ?",
                                 (node.tree_id, node.branch)).fetchone()[0]

    # -- pages of trees (the read side) -------------------------------------
    def count_page(self, run_id: int, *, q: str = "", status: str = "") -> int:
        sql_from, params = _tree_filter(run_id, q, status)
        return self.conn.execute("SELECT COUNT(*)" + sql_from, params).fetchone()[0]

    def page(self, run_id: int, *, q: str = "", status: str = "", limit: int = 50,
             offset: int = 0) -> list[TreeListing]:
        """One page of a run's trees (by id), filtered by persona text and status."""
        sql_from, params = _tree_filter(run_id, q, status)
        rows = self.conn.execute(
            "SELECT t.id, t.persona_id, pa.text AS profile, pb.text AS personality, t.mode, t.turns, t.status,"
            " t.error" + sql_from + " ORDER BY t.id LIMIT ? OFFSET ?", [*params, limit, offset])
        return [row_as(TreeListing, r) for r in rows]

    def nodes_per_tree(self, tree_ids: Sequence[int]) -> dict[int, int]:
        if not tree_ids:
            return {}
        q = ",".join("?" * len(tree_ids))
        return dict(self.conn.execute(f"SELECT tree_id, COUNT(*) FROM nodes WHERE tree_id IN ({q})"
                                      " GROUP BY tree_id", list(tree_ids)).fetchall())

    # -- export --------------------------------------------------------------
    def export_nodes(self, runs: Sequence[int] = (), *, include_incomplete: bool = False) -> Iterator[tuple[int, Node]]:
        """``(run id, node)`` of every selected node in (tree id, turn, branch)
        order, read row by row: complete trees (every tree with
        ``include_incomplete``) of ``runs`` (of every run when empty)."""
        where, params = _export_where(runs, include_incomplete)
        cur = self.conn.execute(
            "SELECT t.run_id, n.id, n.tree_id, n.parent_id, n.turn, n.branch, n.user_message, n.inferred_profile,"
            " n.inferred_personalities, n.preferred, n.rejected, n.continued, n.judge, n.created_at"
            " FROM nodes n JOIN trees t ON t.id = n.tree_id" + where + " ORDER BY n.tree_id, n.turn, n.branch",
            params)
        for row in cur:
            yield row["run_id"], _node(row).node()

    def count_export(self, runs: Sequence[int] = (), *, include_incomplete: bool = False) -> tuple[int, int]:
        """(nodes, trees) that ``export_nodes`` would give."""
        where, params = _export_where(runs, include_incomplete)
        n_nodes, n_trees = self.conn.execute(
            "SELECT count(*), count(DISTINCT t.id) FROM nodes n JOIN trees t ON t.id = n.tree_id" + where,
            params).fetchone()
        return n_nodes, n_trees

    # -- events --------------------------------------------------------------
    def add_event(self, run_id: int | None, tree_id: int | None, kind: str, payload: Any) -> None:
        self.conn.execute("INSERT INTO events (run_id, tree_id, kind, payload, created_at) VALUES (?,?,?,?,?)",
                          (run_id, tree_id, kind, json.dumps(payload, ensure_ascii=False), time.time()))

    def event_payloads(self, kind: str) -> list[Any]:
        """The payloads of every event of ``kind``, oldest first."""
        return [json.loads(r[0]) for r in self.conn.execute(
            "SELECT payload FROM events WHERE kind = ? ORDER BY id", (kind,))]

    def events(self, tree_id: int, limit: int = 200) -> list[EventRecord]:
        return [row_as(EventRecord, r) for r in self.conn.execute(
            "SELECT id, kind, payload, created_at FROM events WHERE tree_id = ? ORDER BY id LIMIT ?",
            (tree_id, limit))]

    def event_count(self, tree_id: int) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM events WHERE tree_id = ?", (tree_id,)).fetchone()[0]


def _export_where(runs: Sequence[int], include_incomplete: bool) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if not include_incomplete:
        clauses.append("t.status = 'complete'")
    if runs:
        q = ",".join("?" * len(runs))
        clauses.append(f"t.run_id IN ({q})")
        params.extend(runs)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
