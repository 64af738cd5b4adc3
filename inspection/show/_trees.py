"""Views of preference trees: a whole tree with its nodes, the calls that
produced each node and what changed in the inferred persona, and pages of a
run's trees, read through the store's ``Trees`` and ``Calls`` repositories."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from aloesim.environment.store import Calls, EventRecord, Trees

from ._calls import CallView, call_view
from ._text import Segment, diff_words

__all__ = ["NodeView", "TreeRow", "TreeView", "count_trees", "list_trees", "load_tree", "tree_events"]

@dataclass(slots=True)
class NodeView:
    """One turn of a tree, with the calls that produced it and what changed in
    the inferred persona since its parent."""

    id: int
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
    calls: list[CallView] = field(default_factory=list)
    profile_diff: list[Segment] = field(default_factory=list)
    personalities_diff: list[Segment] = field(default_factory=list)
    children: list[int] = field(default_factory=list)

    @property
    def persona_changed(self) -> bool:
        return any(s.kind != "same" for s in self.profile_diff + self.personalities_diff)

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s or 0.0 for c in self.calls)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls)

    def as_dict(self, *, calls: bool = True) -> dict[str, Any]:
        d = {
            "id": self.id,
            "parent_id": self.parent_id,
            "turn": self.turn,
            "branch": self.branch,
            "user_message": self.user_message,
            "inferred": {"profile": self.inferred_profile, "personalities": self.inferred_personalities},
            "inferred_changed": self.persona_changed,
            "preferred": self.preferred,
            "rejected": self.rejected,
            "continued": self.continued,
            "judge": self.judge,
            "created_at": self.created_at,
        }
        if calls:
            d["calls"] = [c.as_dict() for c in self.calls]
        return d


@dataclass(slots=True)
class TreeView:
    """A preference tree: its persona, status and nodes ordered by (turn, branch)."""

    id: int
    run_id: int
    persona_id: int
    profile: str
    personality: str
    split: str
    mode: str
    turns: int
    seed: int
    status: str
    error: str | None
    created_at: float
    finished_at: float | None
    nodes: list[NodeView]
    stray_calls: list[CallView]  # calls whose (turn, branch) has no committed node
    events: int

    def node(self, node_id: int) -> NodeView:
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def roots(self) -> list[NodeView]:
        ids = {n.id for n in self.nodes}
        return [n for n in self.nodes if n.parent_id not in ids]

    @property
    def continued_path(self) -> list[NodeView]:
        """The conversation that went furthest: from the root, follow children
        (the preferred one first when both continued)."""
        return self.path_to("")

    def path_to(self, branch: str) -> list[NodeView]:
        """The root-to-leaf conversation through the node at ``branch``: the
        nodes whose branch is a prefix of it, then on past it (preferred child
        first). Empty when the tree has no node at ``branch``."""
        roots = self.roots
        if not roots or not any(n.branch == branch for n in self.nodes):
            return []
        by_id = {n.id: n for n in self.nodes}
        path = [roots[0]]
        while path[-1].children:
            kids = sorted((by_id[c] for c in path[-1].children), key=lambda n: n.branch)
            toward = [k for k in kids if branch.startswith(k.branch)]
            path.append(toward[0] if toward else kids[0])
        return path

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "kind": "tree",
            "id": self.id,
            "run_id": self.run_id,
            "persona": {
                "id": self.persona_id,
                "profile": self.profile,
                "personality": self.personality,
                "split": self.split,
            },
            "mode": self.mode,
            "turns": self.turns,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "nodes": [n.as_dict() for n in self.nodes],
            "stray_calls": [c.as_dict() for c in self.stray_calls],
        }


@dataclass(slots=True)
class TreeRow:
    id: int
    persona_id: int
    profile: str
    personality: str
    mode: str
    turns: int
    status: str
    error: str | None
    nodes: int


def load_tree(conn: sqlite3.Connection, tree_id: int) -> TreeView | None:
    """A whole tree (one tree is small: turns x branches nodes and their calls)."""
    repo = Trees(conn)
    found = repo.get(tree_id)
    if found is None:
        return None
    t, persona = found
    nodes = [
        NodeView(
            id=r.id, parent_id=r.parent_id, turn=r.turn, branch=r.branch, user_message=r.user_message,
            inferred_profile=r.inferred_profile, inferred_personalities=r.inferred_personalities,
            preferred=r.preferred, rejected=r.rejected, continued=r.continued, judge=r.judge, created_at=r.created_at,
        )
        for r in repo.node_records(tree_id)
    ]
    by_id = {n.id: n for n in nodes}
    by_branch = {n.branch: n for n in nodes}
    for n in nodes:
        parent = (
            by_id.get(n.parent_id)
            if n.parent_id is not None
            else by_branch.get(n.branch[:-1])
            if n.branch
            else None
        )
        if parent is not None:
            n.parent_id = parent.id
            parent.children.append(n.id)
        n.profile_diff = diff_words(parent.inferred_profile if parent else None, n.inferred_profile)
        n.personalities_diff = diff_words(
            parent.inferred_personalities if parent else None, n.inferred_personalities
        )
    by_key = {(n.turn, n.branch): n for n in nodes}
    stray: list[CallView] = []
    for r in Calls(conn).of_tree(tree_id):
        call = call_view(r)
        node = by_key.get((call.turn, call.branch or ""))
        (node.calls if node is not None else stray).append(call)
    return TreeView(
        id=t.id,
        run_id=t.run_id,
        persona_id=t.persona_id,
        profile=persona.profile,
        personality=persona.personality,
        split=persona.split,
        mode=t.mode,
        turns=t.turns,
        seed=t.seed,
        status=t.status,
        error=t.error,
        created_at=t.created_at,
        finished_at=t.finished_at,
        nodes=nodes,
        stray_calls=stray,
        events=repo.event_count(tree_id),
    )


def tree_events(conn: sqlite3.Connection, tree_id: int, limit: int = 200) -> list[EventRecord]:
    """The first ``limit`` bus events recorded for a tree."""
    return Trees(conn).events(tree_id, limit)


def count_trees(conn: sqlite3.Connection, run_id: int, *, q: str = "", status: str = "") -> int:
    """How many of a run's trees match the persona text ``q`` and ``status``."""
    return Trees(conn).count_page(run_id, q=q, status=status)


def list_trees(
    conn: sqlite3.Connection, run_id: int, *, q: str = "", status: str = "", limit: int = 50, offset: int = 0
) -> list[TreeRow]:
    """One page of a run's trees (by id), optionally filtered by persona text
    (a LIKE search in profile and personality) and status."""
    repo = Trees(conn)
    rows = repo.page(run_id, q=q, status=status, limit=limit, offset=offset)
    counts = repo.nodes_per_tree([r.id for r in rows])
    return [
        TreeRow(
            id=r.id,
            persona_id=r.persona_id,
            profile=r.profile,
            personality=r.personality,
            mode=r.mode,
            turns=r.turns,
            status=r.status,
            error=r.error,
            nodes=counts.get(r.id, 0),
        )
        for r in rows
    ]
