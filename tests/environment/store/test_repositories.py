"""The typed repositories on real SQLite files: what each statement writes
and reads back, through a plain connection (the sync tools' path) and
through ``Store`` (the commands' path), and the 2 -> 3 migration."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from aloesim.environment import InferredPersona, Node, Persona, PreferenceCheck
from aloesim.environment.store import (
    SCHEMA_VERSION,
    Calls,
    CallTotals,
    Checkpoints,
    Evaluations,
    NewCall,
    Personas,
    Runs,
    Store,
    Trees,
    connect,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def conn(tmp_path: Path):
    c = connect(tmp_path / "repo.db", create=True)
    yield c
    c.close()


def persona(conn: sqlite3.Connection, profile: str, personality: str, split: str = "train") -> int:
    repo = Personas(conn)
    a, b = (repo.add_items(kind, split, [text], [b"\x00" * 8], "emb", source="seed")[0]
            for kind, text in (("profile", profile), ("personality", personality)))
    repo.add_pairs([(a, b)], split)
    return next(p.id for p in repo.personas(split) if p.profile == profile and p.personality == personality)


def node(tree_id: int, branch: str, **kw) -> Node:
    return Node(tree_id=tree_id, turn=len(branch) + 1, branch=branch, user_message=f"m{branch}",
                inferred=InferredPersona("p", None), preferred=f"P{branch}", rejected=f"R{branch}",
                continued=kw.pop("continued", "preferred"), **kw)


def call(run_id: int | None, role: str = "user", **kw) -> NewCall:
    fields = {"run_id": run_id, "role": role, "endpoint": "http://127.0.0.1:1/v1", "model": "m", "tree_id": None,
              "turn": None, "branch": None, "case_id": None, "response": "ok", "prompt_tokens": 10,
              "completion_tokens": 2, "latency_s": 0.5, "attempts": 1, "cached": False, "error": None,
              "cache_key": None, "request": {"messages": [{"role": "user", "content": "hé"}]}}
    return NewCall(**{**fields, **kw})


def test_runs(conn: sqlite3.Connection) -> None:
    runs = Runs(conn)
    a = runs.create("generate", {"seed": 1, "db": "x"}, "h1")
    b = runs.create("evaluate", {"seed": 2}, "h2")
    c = runs.create("generate", {"seed": 1}, "h1")
    assert runs.latest("generate", "h1").id == c and runs.latest("generate", "nope") is None
    assert [r.id for r in runs.all()] == [a, b, c] and [r.id for r in runs.all("evaluate")] == [b]
    assert runs.count() == 3 and runs.first().id == a and runs.newest_ids(2) == [c, b] and runs.ids("generate") == [a, c]
    assert [r.id for r in runs.page(limit=1, offset=1)] == [b]
    r = runs.get(a)
    assert (r.kind, r.config, r.config_hash, r.status, r.invocations, r.wall_s) == \
        ("generate", {"seed": 1, "db": "x"}, "h1", "running", 1, 0.0)
    runs.finish(a, "complete", {"nodes": 4}, wall_s=2.5)
    runs.reopen(a)
    r = runs.get(a)
    assert (r.status, r.finished_at, r.invocations, r.stats, r.wall_s) == ("running", None, 2, {"nodes": 4}, 2.5)
    runs.finish(a, "failed", None)
    assert runs.get(a).stats is None and runs.get(a).wall_s == 2.5  # wall time kept when not given
    assert runs.get(999) is None
    Checkpoints(conn).add(a, "/ckpt/final", "dpo", "base", [a], {"loss": 0.1})
    row = conn.execute("SELECT run_id, stage, source_runs, metrics FROM checkpoints").fetchone()
    assert tuple(row) == (a, "dpo", f"[{a}]", '{"loss": 0.1}')


def test_a_config_that_is_not_json_is_read_as_text(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO runs (kind, config, config_hash, started_at, stats) VALUES ('x', '{oops', 'h', 0, '[1')")
    r = Runs(conn).get(1)
    assert (r.config, r.stats) == ("{oops", "[1")


def test_personas(conn: sqlite3.Connection) -> None:
    repo = Personas(conn)
    ids = repo.add_items("profile", "train", ["a", "b", "a"], [b"1", b"2", b"3"], "emb", source="seed", run_id=None)
    assert ids[0] is not None and ids[1] is not None and ids[2] is None  # a duplicate is skipped
    repo.add_items("profile", "eval", ["a"], [b"4"], "emb", source="imported")
    repo.add_items("personality", "train", ["x"], [b"5"], "emb", source="generated", iteration=3)
    assert repo.texts("profile", "train") == ["a", "b"] and repo.count_items("profile", "eval") == 1
    assert repo.item_ids("profile", "train") == ids[:2]
    pool = repo.pool("personality", "train")
    assert [(i.text, i.iteration, i.embedder, i.embedding) for i in pool] == [("x", 3, "emb", b"5")]
    repo.set_embeddings([(pool[0].id, b"new")], "other")
    assert (repo.pool("personality", "train")[0].embedding, repo.pool("personality", "train")[0].embedder) == \
        (b"new", "other")
    repo.add_pairs([(ids[0], pool[0].id), (ids[1], pool[0].id), (ids[0], pool[0].id)], "train")
    assert repo.pairs("train") == {(ids[0], pool[0].id), (ids[1], pool[0].id)} and repo.count("train") == 2
    assert repo.personas("train") == [Persona(1, "a", "x", "train"), Persona(2, "b", "x", "train")]
    assert repo.personas("eval") == [] and repo.count("eval") == 0 and len(repo.personas()) == 2
    assert repo.get(2) == Persona(2, "b", "x", "train") and repo.get(9) is None


def test_trees_and_nodes(conn: sqlite3.Connection) -> None:
    run = Runs(conn).create("generate", {}, "h")
    p1 = persona(conn, "A 100% real_person", "calm")
    p2 = persona(conn, "A nurse", "brief")
    trees = Trees(conn)
    trees.add(run, [(p1, "path", 3, 11), (p2, "path", 3, 22)])
    trees.add(run, [(p1, "full", 9, 99)])  # planned once: the first plan stays
    t1, t2 = trees.of_run(run)
    assert (t1.persona_id, t1.mode, t1.turns, t1.seed, t1.status) == (p1, "path", 3, 11, "pending")
    with pytest.raises(ValueError, match="parent of branch 'p' is not committed"):
        trees.insert_node(node(t1.id, "p"))
    root = trees.insert_node(node(t1.id, "", judge=PreferenceCheck(True, True)))
    child = trees.insert_node(node(t1.id, "p", continued="rejected"))
    assert trees.insert_node(node(t1.id, "p")) == child  # idempotent on (tree, branch)
    got = trees.nodes(t1.id)
    assert [(n.branch, n.parent_id, n.continued, n.judge) for n in got] == \
        [("", None, "preferred", PreferenceCheck(True, True)), ("p", root, "rejected", None)]
    assert trees.node_records(t1.id)[0].judge == {"preferred_first": True, "preferred_second": True,
                                                  "agrees": True, "disagrees": False}  # the stored JSON
    assert got[1].inferred == InferredPersona("p", None) and got[1].id == child
    trees.start(t1.id)
    trees.complete(t1.id)
    trees.fail(t2.id, "user at branch '': HTTP 500")
    assert [t.id for t in trees.of_run(run, ["complete"])] == [t1.id]
    assert trees.status_counts([run]) == {run: {"complete": 1, "failed": 1}} == trees.status_counts()
    assert trees.status_counts([]) == {} and trees.node_counts() == {run: 2} == trees.node_counts(run)
    assert trees.failed(run, 5) == [(t2.id, "user at branch '': HTTP 500")]
    record, who = trees.get(t1.id)
    assert record.status == "complete" and who == Persona(p1, "A 100% real_person", "calm", "train")
    assert trees.get(999) is None
    # pages: LIKE with % and _ taken literally
    assert [t.id for t in trees.page(run, q="100%")] == [t1.id] and trees.count_page(run, q="100%") == 1
    assert trees.count_page(run, q="1000") == 0 and trees.count_page(run, q="real_p") == 1
    assert trees.count_page(run, q="realXp") == 0 and trees.count_page(run, status="failed") == 1
    assert trees.page(run, limit=1, offset=1)[0].profile == "A nurse"
    assert trees.nodes_per_tree([t1.id, t2.id]) == {t1.id: 2} and trees.nodes_per_tree([]) == {}
    assert trees.count_all() == 2
    # export: complete trees only unless asked, in (tree, turn, branch) order
    assert [(r, n.branch) for r, n in trees.export_nodes()] == [(run, ""), (run, "p")]
    assert trees.count_export() == (2, 1) and trees.count_export([run + 1]) == (0, 0)
    assert trees.count_export(include_incomplete=True) == (2, 1)


def test_events(conn: sqlite3.Connection) -> None:
    trees = Trees(conn)
    trees.add_event(1, 7, "TurnRequested", {"tree_id": 7, "text": "é"})
    trees.add_event(None, None, "personas.profile.iteration", {"iteration": 0})
    trees.add_event(None, None, "personas.profile.iteration", {"iteration": 1})
    assert trees.event_payloads("personas.profile.iteration") == [{"iteration": 0}, {"iteration": 1}]
    (e,) = trees.events(7)
    assert e.kind == "TurnRequested" and json.loads(e.payload) == {"tree_id": 7, "text": "é"}
    assert trees.event_count(7) == 1 and trees.events(7, limit=0) == []


def test_calls_and_the_cache(conn: sqlite3.Connection) -> None:
    calls = Calls(conn)
    calls.add(call(1, tree_id=3, turn=1, branch=""), ("k1", {"text": "ok", "usage": [10, 2]}))
    calls.add(call(1, role="rejected", attempts=3, tree_id=3, turn=1, branch=""))
    calls.add(call(1, role="rejected", error="HTTP 503 (retries exhausted)", response=None, tree_id=3))
    calls.add(call(1, cached=True, case_id=5, turn=2), ("k1", {"text": "other"}))  # the first value stays
    calls.add(call(2, prompt_tokens=7, completion_tokens=1))
    assert calls.cached("k1") == {"text": "ok", "usage": [10, 2]} and calls.cached("k2") is None
    assert calls.totals(1) == CallTotals(calls=4, prompt_tokens=40, completion_tokens=8, retries=2, failures=1,
                                         cached=1, unpriced=4)  # recorded without a price: unknown
    assert calls.totals(3) == CallTotals()
    assert calls.totals_by_run() == {1: calls.totals(1), 2: CallTotals(1, 7, 1, 0, 0, 0, unpriced=1)}
    rejected, user = calls.by_role(1)  # by role name
    assert (user.role, user.calls, user.cached, user.attempts) == ("user", 2, 1, 2)
    assert (rejected.calls, rejected.errors, rejected.attempts, rejected.mean_latency_s) == (2, 1, 4, 0.5)
    assert calls.errors(1, 10) == [(3, "rejected", "HTTP 503 (retries exhausted)", 3)]
    assert calls.newest_id(1) == 4 and calls.newest_id(9) is None
    tree = calls.of_tree(3)
    assert [c.id for c in tree] == [1, 2, 3] and tree[0].request["messages"][0]["content"] == "hé"
    (case,) = calls.of_case(5)
    assert case.cached is True and case.turn == 2


def test_evaluations(conn: sqlite3.Connection) -> None:
    run = Runs(conn).create("evaluate", {}, "h")
    ev = Evaluations(conn)
    eid = ev.create(run, "base", {"kind": "hf", "name": "m"}, {"name": "u"}, {"name": "j"}, 3,
                    [(0, "p0", "q0"), (1, "p1", "q1")])
    assert ev.of_run(run) == [eid] and ev.ids() == [eid] and ev.count() == 1
    c0, c1 = ev.cases(eid)
    assert (c0.case_index, c0.profile, c0.status) == (0, "p0", "pending")
    ev.add_turn(c0.id, 1, "hi", "hello", 4, None)
    ev.add_turn(c0.id, 2, "and?", "so", None, "judge said nothing")
    ev.add_turn(c1.id, 1, "yo", "hey", 2, None)
    with pytest.raises(sqlite3.IntegrityError):
        ev.add_turn(c1.id, 1, "twice", "no", 1, None)
    ev.complete_case(c0.id)
    ev.fail_case(c1.id, "turn 2: HTTP 500")
    assert ev.case_status_counts(eid) == {"complete": 1, "failed": 1}
    ev.reopen_case(c1.id)
    assert ev.cases(eid)[1].status == "pending" and ev.cases(eid)[1].error is None
    assert [t.turn for t in ev.turns(c0.id)] == [1, 2] and ev.turns(c0.id)[1].judge_error == "judge said nothing"
    assert ev.scores(eid) == [(0, 1, 4, None), (0, 2, None, "judge said nothing"), (1, 1, 2, None)]
    assert [(t.case_id, t.case_index, t.turn, t.reply) for t in ev.judged_turns(eid)] == \
        [(c0.id, 0, 1, "hello"), (c0.id, 0, 2, "so"), (c1.id, 1, 1, "hey")]
    assert ev.judge_failures(eid) == 1
    assert ev.al_points([eid]) == {eid: [(1, 3.0, 2), (2, None, 0)]} and ev.al_points([]) == {}
    (page,) = ev.page(limit=5)
    assert (page.label, page.cases, page.turns) == ("base", 2, 3)
    listed = ev.case_page(eid, limit=1)
    assert [(x.case_index, x.turns, x.mean_score) for x in listed] == [(0, 2, 4.0)]
    assert ev.case(c1.id)[1] == "base" and ev.case(999) is None
    ev.set_status(eid, "complete")
    ev.set_report(eid, {"version": 1, "é": True})
    got = ev.get(eid)
    assert (got.status, got.report, got.model) == ("complete", {"version": 1, "é": True}, {"kind": "hf", "name": "m"})


async def test_the_async_path_reads_what_the_writer_committed(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        run = await store.write(lambda c: Runs(c).create("generate", {"a": 1}, "h"))
        pid = await store.write(lambda c: persona(c, "prof", "pers"))
        await store.write(lambda c: Trees(c).add(run, [(pid, "path", 2, 5)]))
        await store.submit(lambda c: Calls(c).add(call(run), ("key", {"text": "t"})))
        (tree,) = await store.read(lambda c: Trees(c).of_run(run))
        node_id = await store.write(lambda c: Trees(c).insert_node(node(tree.id, "")))
        assert await store.read(lambda c: [n.id for n in Trees(c).nodes(tree.id)]) == [node_id]
        assert await store.read(lambda c: Calls(c).cached("key")) == {"text": "t"}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # reads never write
            await store.read(lambda c: Runs(c).create("x", {}, "y"))


def test_migrating_to_version_3_sums_wall_time_from_what_was_recorded(tmp_path: Path) -> None:
    from aloesim.environment.store._schema import MIGRATIONS

    db = tmp_path / "v2.db"
    raw = sqlite3.connect(db)
    for script in MIGRATIONS[:2]:
        raw.executescript(script)
    raw.execute("PRAGMA user_version = 2")
    t = time.time()
    rows = [("generate", json.dumps({"wall_s": 12.5}), t, t + 100),   # stats knew the invocation's wall time
            ("personas", json.dumps({"action": "grow"}), t, t + 7),   # only start and end
            ("evaluate", "not json", t, None)]                        # never finished
    for kind, stats, start, end in rows:
        raw.execute("INSERT INTO runs (kind, config, config_hash, status, started_at, finished_at, stats)"
                    " VALUES (?, '{}', 'h', 'complete', ?, ?, ?)", (kind, start, end, stats))
    raw.commit()
    raw.close()
    conn = connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [(r.wall_s, r.invocations) for r in Runs(conn).all()] == [(12.5, 1), (7.0, 1), (0.0, 1)]
    assert Runs(conn).leases() == {}
    conn.close()
