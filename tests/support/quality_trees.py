"""Hand-built preference trees whose quality metrics are known, in a real
SQLite file. Nodes go through the store's ``Trees.insert_node`` and runs through
``Runs.create``; personas, trees with a chosen status and call records with a
chosen ``finish_reason`` through parameterized SQL (test data only).

``llm_calls.finish_reason`` comes with a migration of its own; on a schema
without it, ``TreeBuilder(..., finish_reason=True)`` adds the column the
same way, so truncation can be tested before and after that migration.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from aloesim.environment import InferredPersona, Node, PreferenceCheck
from aloesim.environment.store import Runs, Trees, connect


@dataclass(frozen=True)
class Turn:
    """One node to write: the user message, the replies, and what the calls said."""

    user: str
    preferred: str | None = None  # None: a text of its own ("Preferred reply at <branch> of tree <id>.")
    rejected: str | None = None
    inferred: tuple[str | None, str | None] = (None, None)
    continued: str = "preferred"
    judge: dict | None = None
    finish: dict[str, str | None] | None = None  # role -> finish_reason of its call; None = no calls written
    tokens: tuple[int, int] | None = None  # completion tokens of the preferred and rejected calls


class TreeBuilder:
    """Write runs, personas, trees, nodes and calls into ``path`` (created)."""

    def __init__(self, path: str | Path, *, finish_reason: bool = True) -> None:
        self.path = Path(path)
        self.conn: sqlite3.Connection = connect(self.path, create=True)
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(llm_calls)")}
        if finish_reason and "finish_reason" not in cols:
            self.conn.execute("ALTER TABLE llm_calls ADD COLUMN finish_reason TEXT")
        self.has_finish = finish_reason or "finish_reason" in cols

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, kind: str = "generate", *, user_prompt: str | None = None, **config: object) -> int:
        """A run whose stored config has ``generation`` = ``config`` (and ``prompts.user`` if given)."""
        cfg: dict[str, object] = {"generation": config} if config else {}
        if user_prompt is not None:
            cfg["prompts"] = {"user": user_prompt}
        return Runs(self.conn).create(kind, cfg, f"h-{kind}-{config}-{user_prompt}")

    def persona(self, profile: str, personality: str) -> int:
        ids = []
        for kind, text in (("profile", profile), ("personality", personality)):
            row = self.conn.execute("SELECT id FROM persona_items WHERE kind = ? AND split = 'train' AND text = ?",
                                    (kind, text)).fetchone()
            ids.append(row[0] if row else self.conn.execute(
                "INSERT INTO persona_items (kind, split, text, source, created_at) VALUES (?, 'train', ?, 'seed', 0)",
                (kind, text)).lastrowid)
        return self.conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at)"
                                 " VALUES (?, ?, 'train', 0)", ids).lastrowid

    def tree(self, run_id: int, persona_id: int, *, turns: int, mode: str = "path", status: str = "complete") -> int:
        return self.conn.execute(
            "INSERT INTO trees (run_id, persona_id, mode, turns, seed, status, created_at) VALUES (?, ?, ?, ?, 0, ?, 0)",
            (run_id, persona_id, mode, turns, status)).lastrowid

    def node(self, tree_id: int, branch: str, turn: Turn, *, run_id: int | None = None) -> int:
        node = Node(tree_id=tree_id, turn=len(branch) + 1, branch=branch, user_message=turn.user,
                    inferred=InferredPersona(*turn.inferred),
                    preferred=f"Preferred reply at {branch or 'root'} of tree {tree_id}." if turn.preferred is None
                    else turn.preferred,
                    rejected=f"Rejected reply at {branch or 'root'} of tree {tree_id}." if turn.rejected is None
                    else turn.rejected,
                    continued=turn.continued,  # type: ignore[arg-type]
                    judge=None if turn.judge is None else PreferenceCheck.from_dict(turn.judge))
        node_id = Trees(self.conn).insert_node(node)
        if turn.finish is not None:
            p_tok, r_tok = turn.tokens or (None, None)
            for role, reason in turn.finish.items():
                tokens = p_tok if role == "preferred" else r_tok if role == "rejected" else 10
                self.call(tree_id, node.turn, branch, role, finish_reason=reason, completion_tokens=tokens,
                          run_id=run_id)
        return node_id

    def conversation(self, tree_id: int, turns: list[Turn], *, run_id: int | None = None) -> list[int]:
        """A path-mode conversation: each node continues the reply its ``continued`` names."""
        ids, branch = [], ""
        for t in turns:
            ids.append(self.node(tree_id, branch, t, run_id=run_id))
            branch += "p" if t.continued == "preferred" else "r"
        return ids

    def call(self, tree_id: int, turn: int, branch: str, role: str, *, finish_reason: str | None = "stop",
             completion_tokens: int | None = 10, error: str | None = None, run_id: int | None = None,
             max_tokens: int | None = None) -> int:
        request: dict[str, object] = {"messages": []}
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        vals: list[object] = [run_id, role, "http://127.0.0.1:1/v1", "m", tree_id, turn, branch,
                              json.dumps(request), None if error else "text", completion_tokens, error, 0]
        if self.has_finish:
            self.conn.execute(
                "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, request, response,"
                " completion_tokens, error, created_at, finish_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*vals, finish_reason))
        else:
            self.conn.execute(
                "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, request, response,"
                " completion_tokens, error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", vals)
        return self.conn.execute("SELECT max(id) FROM llm_calls").fetchone()[0]


ALL_STOP = {"user": "stop", "inducer": "stop", "preferred": "stop", "rejected": "stop"}

PROFILES = [
    (
        ("I am a retired history teacher from Lyon who grows tomatoes and heirloom beans in a community garden"
         " and volunteers at the local library on weekends."),
        "Warm, talkative and curious; loves long stories and gentle humour.",
    ),
    (
        ("I work night shifts as an emergency nurse in Chicago, have two teenage daughters, and run marathons"
         " to clear my head after difficult weeks."),
        "Direct, pragmatic and a little sarcastic; dislikes small talk.",
    ),
    (
        ("I am a freelance illustrator in Osaka who draws children's books, keeps three cats and practises"
         " kendo twice a week at a neighbourhood dojo."),
        "Shy at first, detail-oriented and playful once comfortable.",
    ),
]

RECITE = "Hi! I am a retired history teacher from Lyon who grows tomatoes and heirloom beans."
FLIP = "Hello! How can I help you today?"
AGREE = {"preferred_first": True, "preferred_second": True, "agrees": True, "disagrees": False}
DISAGREE = {"preferred_first": False, "preferred_second": False, "agrees": False, "disagrees": True}
SPLIT = {"preferred_first": True, "preferred_second": False, "agrees": False, "disagrees": False}


def write_flagged(path: Path) -> dict[str, int]:
    """Run 1: tree A (path, 3 turns), tree B (path, 2 turns), tree C (full, 2 turns), tree D (failed).
    Flags by design:
      A ''   -            A 'p'  leaked, truncated (preferred), judge_disagree    A 'pr' role_flip, duplicate (pair)
      B ''   empty        B 'p'  duplicate (user repeats turn 1)
      C ''   -            C 'p'  leaked                                          C 'r'  -
      D ''   role_flip (tree failed)"""
    with TreeBuilder(path) as b:
        run = b.run(turns=3)
        pa, pb, pc = (b.persona(*p) for p in PROFILES)
        ta = b.tree(run, pa, turns=3)
        b.conversation(ta, [
            Turn("I spent the morning in my garden.", judge=AGREE, finish=ALL_STOP, tokens=(20, 10)),
            Turn(RECITE, judge=DISAGREE, continued="rejected", finish={**ALL_STOP, "preferred": "length"},
                 tokens=(64, 12)),
            Turn(FLIP, preferred="Same text.", rejected="same  TEXT!", finish={**ALL_STOP, "user": None}),
        ])
        tb = b.tree(run, pb, turns=2)
        b.conversation(tb, [
            Turn("Long week at the hospital.", preferred="  ", finish=ALL_STOP),
            Turn("Long week at the hospital!", judge=SPLIT, finish=ALL_STOP),
        ])
        tc = b.tree(run, pc, turns=2, mode="full")
        b.node(tc, "", Turn("I just finished a new picture book.", continued="both", finish=ALL_STOP))
        b.node(tc, "p", Turn("I am a freelance illustrator in Osaka who draws children's books.", continued="both"))
        b.node(tc, "r", Turn("My cats walked over the drawing again.", continued="both"))
        td = b.tree(run, b.persona(PROFILES[0][0], PROFILES[1][1]), turns=2, status="failed")
        b.node(td, "", Turn(FLIP))
        other = b.run(turns=1)
        te = b.tree(other, pa, turns=1)
        b.node(te, "", Turn(RECITE.replace("Lyon", "Lyon,")))
        return {"run": run, "other": other, "A": ta, "B": tb, "C": tc, "D": td, "E": te}
