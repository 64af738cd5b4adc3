"""Databases to look at without running a model: a small hand-built one
(markup and script in personas, messages and replies, a failed tree, a full
tree, an evaluation) for tests and demos, and a large synthetic one for the
viewer benchmark. Both are written with parameterized SQL through the store's
``connect``.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

from aloesim.environment.store import connect

__all__ = ["SAMPLE", "write_sample", "write_synthetic"]

XSS = "<script>window.pwned = true</script>"

SAMPLE = {
    "xss": XSS,
    "profile": f"I am a retired <b>teacher</b> from Lyon {XSS} who grows tomatoes.",
    "personality": "Warm, talkative & curious <i>about everything</i>.",
    "turn_messages": [
        'Hi! Any ideas for my garden this spring? <img src=x onerror="window.pwned = true">',
        "I taught history for 30 years, by the way. [bold red]not rich markup[/bold red]",
        "What would you plant in Lyon's climate?",
    ],
    "inferred": [
        (None, None),
        ("A retired history teacher.", "Talkative."),
        ("A retired history teacher living in Lyon.", "Talkative and warm."),
    ],
}


def _insert(conn: sqlite3.Connection, table: str, row: dict) -> int:
    cols = ", ".join(row)
    marks = ", ".join("?" * len(row))
    return conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values())).lastrowid


def _persona(conn: sqlite3.Connection, profile: str, personality: str, t: float, split: str = "train") -> int:
    a = _insert(
        conn,
        "persona_items",
        {"kind": "profile", "split": split, "text": profile, "source": "seed", "created_at": t},
    )
    b = _insert(
        conn,
        "persona_items",
        {"kind": "personality", "split": split, "text": personality, "source": "seed", "created_at": t},
    )
    return _insert(conn, "personas", {"profile_id": a, "personality_id": b, "split": split, "created_at": t})


def _call(
    conn: sqlite3.Connection, t: float, role: str, messages: list[dict], response: str | None, **kw
) -> int:
    request = {"messages": messages, "temperature": 0.7, "max_tokens": 256, "seed": 1}
    row = {
        "role": role,
        "endpoint": "http://127.0.0.1:8080/v1",
        "model": "SmolLM2-135M-Instruct",
        "request": json.dumps(request),
        "response": response,
        "prompt_tokens": 40 + len(str(messages)) // 4,
        "completion_tokens": 12 + len(response or "") // 4,
        "latency_s": 0.25,
        "attempts": 1,
        "cached": 0,
        "created_at": t,
    }
    row.update(kw)
    return _insert(conn, "llm_calls", row)


def write_sample(path: str | Path) -> dict[str, int]:
    """Write the hand-built database at ``path`` (must not exist yet) and return
    the ids tests look for: run1, run2, tree (3-turn path tree), failed_tree,
    full_tree, evaluation (2 cases), case (its first), evaluation2 (a second,
    unfinished evaluation linked to run1, with one case: case2)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    conn = connect(path, create=True)
    t0 = 1_700_000_000.0
    ids: dict[str, int] = {}
    try:
        conn.execute("BEGIN IMMEDIATE")
        cfg1 = {
            "seed": 0,
            "generation": {"turns": 3, "mode": "path", "trees": 2},
            "backend": {"kind": "embedded", "model": "SmolLM2-135M-Instruct"},
        }
        cfg2 = {
            "seed": 1,
            "generation": {"turns": 2, "mode": "full", "trees": 1},
            "backend": {"kind": "embedded", "model": "SmolLM2-135M-Instruct"},
        }
        ids["run1"] = _insert(
            conn,
            "runs",
            {
                "kind": "generate",
                "config": json.dumps(cfg1),
                "config_hash": "h1",
                "status": "complete",
                "started_at": t0,
                "finished_at": t0 + 93.5,
                "stats": json.dumps({"trees": 2, "failed": 1}),
                "wall_s": 93.5,  # one invocation, as open_run records it
                "invocations": 1,
            },
        )
        ids["run2"] = _insert(
            conn,
            "runs",
            {
                "kind": "generate",
                "config": json.dumps(cfg2),
                "config_hash": "h2",
                "status": "running",
                "started_at": t0 + 100,
            },
        )
        p1 = _persona(conn, SAMPLE["profile"], SAMPLE["personality"], t0)
        p2 = _persona(conn, "A nurse in Oslo who runs marathons.", "Direct and brief.", t0)
        p3 = _persona(conn, "A student of astronomy in Cairo.", "Playful, likes jokes.", t0)

        # tree 1: path mode, 3 turns, continued p, r, then preferred at the last turn
        tree = ids["tree"] = _insert(
            conn,
            "trees",
            {
                "run_id": ids["run1"],
                "persona_id": p1,
                "mode": "path",
                "turns": 3,
                "seed": 7,
                "status": "complete",
                "created_at": t0,
                "finished_at": t0 + 60,
            },
        )
        branches, continued = ["", "p", "pr"], ["preferred", "rejected", "preferred"]
        parent = None
        for i, (branch, cont) in enumerate(zip(branches, continued)):
            turn = i + 1
            prof, pers = SAMPLE["inferred"][i]
            judge = (
                json.dumps({"verdict": "preferred", "reason": "mentions <b>Lyon</b>"}) if turn == 2 else None
            )
            parent = _insert(
                conn,
                "nodes",
                {
                    "tree_id": tree,
                    "parent_id": parent,
                    "turn": turn,
                    "branch": branch,
                    "user_message": SAMPLE["turn_messages"][i],
                    "inferred_profile": prof,
                    "inferred_personalities": pers,
                    "preferred": f"Preferred reply {turn}: tailored <em>advice</em> for you.",
                    "rejected": f"Rejected reply {turn}: generic <u>advice</u>.",
                    "continued": cont,
                    "judge": judge,
                    "created_at": t0 + turn,
                },
            )
            ctx = {"run_id": ids["run1"], "tree_id": tree, "turn": turn, "branch": branch}
            um = SAMPLE["turn_messages"][i]
            _call(
                conn,
                t0 + turn,
                "user",
                [
                    {"role": "system", "content": f"You role-play: {SAMPLE['profile']}"},
                    {"role": "user", "content": f"Start turn {turn}"},
                ],
                um,
                **ctx,
            )
            _call(
                conn,
                t0 + turn,
                "inducer",
                [{"role": "system", "content": "Infer the persona."}, {"role": "user", "content": um}],
                json.dumps({"profile": prof, "personalities": pers}),
                **ctx,
            )
            _call(
                conn,
                t0 + turn,
                "preferred",
                [
                    {"role": "system", "content": "Reply to fit the inferred persona."},
                    {"role": "user", "content": um},
                ],
                f"Preferred reply {turn}",
                latency_s=0.5 + turn,
                **ctx,
            )
            _call(
                conn,
                t0 + turn,
                "rejected",
                [{"role": "user", "content": um}],
                f"Rejected reply {turn}",
                attempts=3 if turn == 2 else 1,
                **ctx,
            )
            if turn == 2:
                _call(
                    conn,
                    t0 + turn,
                    "judge",
                    [{"role": "user", "content": "Which reply fits better?"}],
                    '{"verdict": "preferred"}',
                    **ctx,
                )
        # a call for turn 4 that never produced a node (the run stopped there)
        _call(
            conn,
            t0 + 50,
            "user",
            [{"role": "user", "content": "Start turn 4"}],
            None,
            run_id=ids["run1"],
            tree_id=tree,
            turn=4,
            branch="prp",
            error="timeout after 120s",
            attempts=5,
            latency_s=None,
            prompt_tokens=None,
            completion_tokens=None,
        )
        for k, kind in enumerate(["TurnRequested", "UserSpoke", "PersonaInferred", "RepliesReady"]):
            _insert(
                conn,
                "events",
                {
                    "run_id": ids["run1"],
                    "tree_id": tree,
                    "kind": kind,
                    "payload": json.dumps({"turn": 1, "note": "<b>bold</b>"}),
                    "created_at": t0 + k,
                },
            )

        # tree 2: failed after one node
        ids["failed_tree"] = _insert(
            conn,
            "trees",
            {
                "run_id": ids["run1"],
                "persona_id": p2,
                "mode": "path",
                "turns": 3,
                "seed": 8,
                "status": "failed",
                "error": "LLM call failed: role=inducer attempts=5: bad JSON",
                "created_at": t0,
            },
        )
        _insert(
            conn,
            "nodes",
            {
                "tree_id": ids["failed_tree"],
                "turn": 1,
                "branch": "",
                "user_message": "Hello.",
                "preferred": "Hi, runner!",
                "rejected": "Hello.",
                "continued": "preferred",
                "created_at": t0,
            },
        )
        _call(
            conn,
            t0,
            "inducer",
            [{"role": "user", "content": "Hello."}],
            "not json",
            run_id=ids["run1"],
            tree_id=ids["failed_tree"],
            turn=2,
            branch="p",
            error="StructuredOutputError: invalid JSON",
            attempts=5,
        )

        # tree 3: full mode, both replies continued at the root
        ids["full_tree"] = ft = _insert(
            conn,
            "trees",
            {
                "run_id": ids["run2"],
                "persona_id": p3,
                "mode": "full",
                "turns": 2,
                "seed": 9,
                "status": "running",
                "created_at": t0 + 100,
            },
        )
        root = _insert(
            conn,
            "nodes",
            {
                "tree_id": ft,
                "turn": 1,
                "branch": "",
                "user_message": "Tell me about Mars.",
                "inferred_profile": "Likes astronomy.",
                "preferred": "Mars, as you know...",
                "rejected": "Mars is a planet.",
                "continued": "both",
                "created_at": t0 + 101,
            },
        )
        for letter in "pr":
            _insert(
                conn,
                "nodes",
                {
                    "tree_id": ft,
                    "parent_id": root,
                    "turn": 2,
                    "branch": letter,
                    "user_message": f"Follow-up after {letter}",
                    "inferred_profile": "Likes astronomy.",
                    "inferred_personalities": "Playful.",
                    "preferred": f"P after {letter}",
                    "rejected": f"R after {letter}",
                    "continued": "preferred",
                    "created_at": t0 + 102,
                },
            )

        # an evaluation with two cases of three turns
        ids["evaluation"] = ev = _insert(
            conn,
            "evaluations",
            {
                "run_id": None,
                "label": "base <i>model</i>",
                "model": json.dumps({"name": "SmolLM2-135M-Instruct"}),
                "user_model": json.dumps({"name": "SmolLM2"}),
                "judge_model": json.dumps({"name": "SmolLM2"}),
                "turns": 3,
                "status": "complete",
                "report": json.dumps({"average": 3.0}),
                "created_at": t0 + 200,
            },
        )
        scores = [[2, 3, 4], [3, None, 5]]
        for ci, case_scores in enumerate(scores):
            cid = _insert(
                conn,
                "eval_cases",
                {
                    "evaluation_id": ev,
                    "case_index": ci,
                    "profile": SAMPLE["profile"] if ci == 0 else "A baker in Rome.",
                    "personality": SAMPLE["personality"],
                    "status": "complete",
                },
            )
            ids.setdefault("case", cid)
            for k, sc in enumerate(case_scores, start=1):
                _insert(
                    conn,
                    "eval_turns",
                    {
                        "case_id": cid,
                        "turn": k,
                        "user_message": f"Case {ci} message {k}",
                        "reply": f"Case {ci} reply {k} <script>window.pwned = true</script>",
                        "score": sc,
                        "judge_error": None if sc else "judge reply unparseable",
                        "created_at": t0 + 200 + k,
                    },
                )
                _call(
                    conn,
                    t0 + 200,
                    "evaluated",
                    [{"role": "user", "content": f"Case {ci} message {k}"}],
                    f"Case {ci} reply {k}",
                    case_id=cid,
                    turn=k,
                )
        # a second evaluation (a tuned model, say) to compare against, linked to run 1
        ids["evaluation2"] = ev2 = _insert(
            conn,
            "evaluations",
            {
                "run_id": ids["run1"],
                "label": "dpo",
                "model": json.dumps({"name": "dpo-checkpoint"}),
                "user_model": json.dumps({"name": "SmolLM2"}),
                "judge_model": json.dumps({"name": "SmolLM2"}),
                "turns": 3,
                "status": "running",
                "created_at": t0 + 300,
            },
        )
        cid = ids["case2"] = _insert(
            conn,
            "eval_cases",
            {
                "evaluation_id": ev2,
                "case_index": 0,
                "profile": "A baker in Rome.",
                "personality": "Shy.",
                "status": "pending",
            },
        )
        for k, sc in enumerate([4, 5], start=1):
            _insert(
                conn,
                "eval_turns",
                {
                    "case_id": cid,
                    "turn": k,
                    "user_message": f"Hello {k}",
                    "reply": f"Hi {k}",
                    "score": sc,
                    "created_at": t0 + 300 + k,
                },
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return ids


_WORDS = [
    "teacher",
    "nurse",
    "baker",
    "pilot",
    "farmer",
    "student",
    "chef",
    "artist",
    "engineer",
    "writer",
    "runner",
    "painter",
    "doctor",
    "lawyer",
    "sailor",
    "Lyon",
    "Oslo",
    "Cairo",
    "Rome",
    "Lima",
    "Kyoto",
    "Accra",
    "Perth",
    "Quito",
    "Riga",
    "gardening",
    "chess",
    "jazz",
    "hiking",
    "cooking",
    "birds",
    "trains",
    "poetry",
    "football",
    "astronomy",
]


def write_synthetic(
    path: str | Path,
    *,
    trees: int = 10_000,
    nodes_per_tree: int = 10,
    calls_per_node: int = 4,
    cases: int = 100,
    seed: int = 0,
) -> dict[str, int]:
    """Write a large database for benchmarks: one run of ``trees`` path-mode
    trees of ``nodes_per_tree`` turns, ``calls_per_node`` LLM calls per node,
    and one evaluation of ``cases`` cases. Returns counts and the ids used."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    rng = random.Random(seed)
    conn = connect(path, create=True)
    t0 = 1_700_000_000.0
    try:
        conn.execute("BEGIN IMMEDIATE")
        run = _insert(
            conn,
            "runs",
            {
                "kind": "generate",
                "config": json.dumps({"seed": seed, "trees": trees}),
                "config_hash": "synthetic",
                "status": "complete",
                "started_at": t0,
                "finished_at": t0 + 3600,
            },
        )

        def sentence(n: int) -> str:
            return " ".join(rng.choice(_WORDS) for _ in range(n))

        items = []
        for i in range(trees):
            items.append((2 * i + 1, "profile", f"Persona {i}: {sentence(12)}."))
            items.append((2 * i + 2, "personality", f"Traits {i}: {sentence(6)}."))
        conn.executemany(
            "INSERT INTO persona_items (id, kind, text, source, created_at) VALUES (?, ?, ?, 'seed', ?)",
            [(a, b, c, t0) for a, b, c in items],
        )
        conn.executemany(
            "INSERT INTO personas (id, profile_id, personality_id, created_at) VALUES (?, ?, ?, ?)",
            [(i + 1, 2 * i + 1, 2 * i + 2, t0) for i in range(trees)],
        )
        conn.executemany(
            "INSERT INTO trees (id, run_id, persona_id, mode, turns, seed, status, created_at) "
            "VALUES (?, ?, ?, 'path', ?, ?, ?, ?)",
            [
                (i + 1, run, i + 1, nodes_per_tree, i, "failed" if i % 97 == 0 else "complete", t0)
                for i in range(trees)
            ],
        )
        node_rows, call_rows = [], []
        nid = 0
        for tid in range(1, trees + 1):
            branch, parent = "", None
            for turn in range(1, nodes_per_tree + 1):
                nid += 1
                cont = "preferred" if rng.random() < 0.7 else "rejected"
                node_rows.append(
                    (
                        nid,
                        tid,
                        parent,
                        turn,
                        branch,
                        sentence(15),
                        sentence(8),
                        sentence(4),
                        sentence(40),
                        sentence(30),
                        cont,
                        t0,
                    )
                )
                for c in range(calls_per_node):
                    role = ("user", "inducer", "preferred", "rejected", "judge")[c % 5]
                    req = json.dumps(
                        {
                            "messages": [
                                {"role": "system", "content": sentence(20)},
                                {"role": "user", "content": sentence(15)},
                            ],
                            "temperature": 0.7,
                        }
                    )
                    call_rows.append(
                        (
                            run,
                            role,
                            tid,
                            turn,
                            branch,
                            req,
                            sentence(25),
                            120,
                            60,
                            round(rng.uniform(0.1, 3.0), 3),
                            t0,
                        )
                    )
                parent = nid
                branch += "p" if cont == "preferred" else "r"
            if len(node_rows) >= 20_000:
                _flush(conn, node_rows, call_rows)
        _flush(conn, node_rows, call_rows)
        ev = _insert(
            conn,
            "evaluations",
            {
                "run_id": None,
                "label": "synthetic",
                "model": "{}",
                "user_model": "{}",
                "judge_model": "{}",
                "turns": 10,
                "status": "complete",
                "created_at": t0,
            },
        )
        for ci in range(cases):
            cid = _insert(
                conn,
                "eval_cases",
                {
                    "evaluation_id": ev,
                    "case_index": ci,
                    "profile": sentence(12),
                    "personality": sentence(6),
                    "status": "complete",
                },
            )
            conn.executemany(
                "INSERT INTO eval_turns (case_id, turn, user_message, reply, score, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        k,
                        sentence(15),
                        sentence(40),
                        min(5, max(1, round(rng.gauss(2 + k * 0.25, 1)))),
                        t0,
                    )
                    for k in range(1, 11)
                ],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return {
        "run": run,
        "evaluation": ev,
        "trees": trees,
        "nodes": trees * nodes_per_tree,
        "calls": trees * nodes_per_tree * calls_per_node,
        "cases": cases,
    }


def _flush(conn: sqlite3.Connection, node_rows: list, call_rows: list) -> None:
    conn.executemany(
        "INSERT INTO nodes (id, tree_id, parent_id, turn, branch, user_message, inferred_profile, "
        "inferred_personalities, preferred, rejected, continued, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        node_rows,
    )
    conn.executemany(
        "INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, request, response, "
        "prompt_tokens, completion_tokens, latency_s, created_at) "
        "VALUES (?, ?, 'http://127.0.0.1:8080/v1', 'synthetic', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        call_rows,
    )
    node_rows.clear()
    call_rows.clear()
