"""``aloe runs`` (listing, config differences, counts) and ``aloe merge``
(shards merged = one unsharded run; idempotent; remapped references; bad
inputs change nothing)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_generate import (  # sibling test module (pytest puts its folder on sys.path)
    add_personas,
    cfg_for,
    grow,
)

from aloesim.agents.testing import ScriptedRequest
from aloesim.core.errors import ConfigError, InputError, StoreError
from aloesim.environment.store import Batches, Runs, connect, merge_databases, transaction
from aloesim.inspection import list_run_rows, runs_rich_table
from aloesim.orchestration.commands import merge as merge_cmd
from aloesim.orchestration.commands import runs as runs_cmd

pytestmark = pytest.mark.anyio


def echo(req: ScriptedRequest):
    """A deterministic model: the reply is a digest of what the role was sent
    (no tree ids), like the latency server, so two databases growing the same
    persona produce the same tree whatever their ids."""
    h = hashlib.sha256(json.dumps(req.messages).encode()).hexdigest()[:10]
    if req.role == "inducer":
        return {"profile": f"revealed {h}", "personalities": None}
    return f"{req.role} says {h}"


class Echo:
    async def __call__(self, req: ScriptedRequest):
        return echo(req)


def content(db: Path) -> dict[tuple[str, str, str], tuple]:
    """Every node by (profile text, personality text, branch): what a tree holds, free of ids."""
    rows = connect(db).execute(
        "SELECT a.text, b.text, n.branch, n.turn, n.user_message, n.inferred_profile, n.inferred_personalities,"
        " n.preferred, n.rejected, n.continued, pn.branch AS parent_branch"
        " FROM nodes n JOIN trees t ON t.id = n.tree_id JOIN personas p ON p.id = t.persona_id"
        " JOIN persona_items a ON a.id = p.profile_id JOIN persona_items b ON b.id = p.personality_id"
        " LEFT JOIN nodes pn ON pn.id = n.parent_id").fetchall()
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def counts(db: Path) -> dict[str, int]:
    conn = connect(db)
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("runs", "persona_items", "personas", "trees", "nodes", "events", "llm_calls", "llm_cache")}


async def grow_db(db: Path, *overrides: str, personas: int = 12) -> int:
    add_personas(db, personas)
    cfg = cfg_for(db, "generation.trees=1000", "generation.turns=3", *overrides)
    progress, _, run_id = await grow(db, cfg, Echo())
    assert progress.trees_failed == 0
    return run_id


def add_calls(db: Path, run_id: int, tree_id: int) -> None:
    """Two LLM call records as the gateway writes them (one retried twice, one failed)."""
    conn = connect(db)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, request, response,"
                 " prompt_tokens, completion_tokens, attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (run_id, "user", "http://x/v1", "m", tree_id, 1, "", '{"messages": 1}', "hi", 100, 10, 3, 1.5))
    conn.execute("INSERT INTO llm_calls (run_id, role, endpoint, model, tree_id, turn, branch, request, error,"
                 " prompt_tokens, completion_tokens, attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (run_id, "rejected", "http://x/v1", "m", tree_id, 1, "", '{"messages": 2}', "timeout", 50, 0, 1, 2.5))
    conn.execute("INSERT INTO llm_cache (key, response, created_at) VALUES (?,?,?)", (f"k-{db.name}", "{}", 1.0))
    conn.execute("COMMIT")


# -- aloe merge ---------------------------------------------------------------

async def test_merged_shards_equal_one_unsharded_run_and_merging_twice_adds_nothing(tmp_path: Path) -> None:
    whole, a, b, out = (tmp_path / n for n in ("whole.db", "a.db", "b.db", "out.db"))
    await grow_db(whole)
    run_a = await grow_db(a, "generation.shard=0/2")
    run_b = await grow_db(b, "generation.shard=1/2")
    tree_a = connect(a).execute("SELECT id FROM trees ORDER BY id DESC LIMIT 1").fetchone()[0]
    add_calls(a, run_a, tree_a)
    add_calls(b, run_b, 1)
    assert content(a) and content(b) and not set(content(a)) & set(content(b))

    results = merge_databases(out, [a, b])
    assert [r.added["trees"] for r in results] == [len({k[:2] for k in content(a)}), len({k[:2] for k in content(b)})]
    assert content(out) == content(whole)  # same trees, same texts, same parents
    c = counts(out)
    assert c["runs"] == 2  # the shards are distinct runs
    assert c["trees"] == 12 and c["nodes"] == 36 and c["llm_calls"] == 4 and c["llm_cache"] == 2
    assert c["persona_items"] == 24  # each shard database held all 12 personas: deduplicated by text
    assert c["events"] == counts(a)["events"] + counts(b)["events"]

    again = merge_databases(out, [a, b, a])
    assert all(sum(r.added.values()) == 0 for r in again)
    assert counts(out) == c and content(out) == content(whole)

    # the unsharded run is a third run over the same personas: nothing else is duplicated
    merge_databases(out, [whole])
    c3 = counts(out)
    assert c3["runs"] == 3 and c3["persona_items"] == 24 and c3["personas"] == 12 and c3["trees"] == 24


async def test_merge_remaps_every_reference(tmp_path: Path) -> None:
    a, b, out = (tmp_path / n for n in ("a.db", "b.db", "out.db"))
    await grow_db(a, "generation.shard=0/2", personas=6)
    run_b = await grow_db(b, "generation.shard=1/2", personas=6)
    b_tree = connect(b).execute("SELECT id FROM trees ORDER BY id LIMIT 1").fetchone()[0]
    add_calls(b, run_b, b_tree)
    merge_databases(out, [a, b])
    conn = connect(out)
    # nodes: parent in the same tree, one turn earlier, branch one letter shorter
    bad = conn.execute(
        "SELECT COUNT(*) FROM nodes n LEFT JOIN nodes p ON p.id = n.parent_id WHERE (n.branch = '' AND n.parent_id"
        " IS NOT NULL) OR (n.branch != '' AND (p.id IS NULL OR p.tree_id != n.tree_id OR p.turn != n.turn - 1"
        " OR p.branch != substr(n.branch, 1, length(n.branch) - 1)))").fetchone()[0]
    assert bad == 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # events and call records point at the merged trees and runs
    for tree_id, payload in conn.execute("SELECT tree_id, payload FROM events WHERE tree_id IS NOT NULL"):
        assert json.loads(payload)["tree_id"] == tree_id
    assert conn.execute("SELECT COUNT(*) FROM events e LEFT JOIN trees t ON t.id = e.tree_id"
                        " WHERE e.tree_id IS NOT NULL AND (t.id IS NULL OR t.run_id != e.run_id)").fetchone()[0] == 0
    calls = conn.execute("SELECT c.run_id, t.run_id, a.text FROM llm_calls c JOIN trees t ON t.id = c.tree_id"
                         " JOIN personas p ON p.id = t.persona_id JOIN persona_items a ON a.id = p.profile_id"
                         ).fetchall()
    b_profile = connect(b).execute(
        "SELECT a.text FROM trees t JOIN personas p ON p.id = t.persona_id JOIN persona_items a"
        " ON a.id = p.profile_id WHERE t.id = ?", (b_tree,)).fetchone()[0]
    assert len(calls) == 2 and all(c[0] == c[1] and c[2] == b_profile for c in calls)


def test_the_batch_journal_is_merged_and_a_later_state_wins(tmp_path: Path) -> None:
    """Shards grown in batch mode keep their journal (which batch holds which request)
    through a merge: the provider's batch ids as they are, each request once, and the
    state seen last; merging again adds nothing."""
    a, b, out = (tmp_path / n for n in ("a.db", "b.db", "out.db"))
    for db in (a, b):
        connect(db, create=True).close()
    transaction(a, lambda c: Batches(c).add("batch_1", "openai", "gpt-4o", "user", ["k1", "k2"], "in_progress"))
    shutil.copy(a, b)
    transaction(b, lambda c: Batches(c).set_state("batch_1", "completed", at=2e9))
    transaction(b, lambda c: Batches(c).add("batch_2", "openai", "gpt-4o", "inducer", ["k3"], "validating"))
    merge_databases(out, [a, b])
    (result,) = merge_databases(out, [b])
    assert result.added["llm_batches"] == 0 and result.added["llm_batch_requests"] == 0
    conn = connect(out)
    assert [tuple(r) for r in conn.execute("SELECT id, state, requests FROM llm_batches ORDER BY id")] == [
        ("batch_1", "completed", 2), ("batch_2", "validating", 1)]
    assert Batches(conn).latest(["k1", "k2", "k3", "k4"], "openai", "gpt-4o") == {
        "k1": "batch_1", "k2": "batch_1", "k3": "batch_2"}
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


async def test_merging_a_newer_copy_brings_trees_up_to_date(tmp_path: Path) -> None:
    db, old, out = (tmp_path / n for n in ("db.db", "old.db", "out.db"))
    await grow_db(db, personas=3)
    shutil.copy(db, old)
    conn = connect(old)  # the old copy: one tree was still running, its last node not yet there
    tree_id = conn.execute("SELECT id FROM trees ORDER BY id LIMIT 1").fetchone()[0]
    conn.execute("DELETE FROM nodes WHERE tree_id = ? AND turn = 3", (tree_id,))
    conn.execute("UPDATE trees SET status = 'running', finished_at = NULL WHERE id = ?", (tree_id,))
    conn.close()
    merge_databases(out, [old])
    assert counts(out)["nodes"] == 8
    (result,) = merge_databases(out, [db])
    assert result.added["nodes"] == 1 and result.updated == {"trees": 1}
    assert content(out) == content(db)
    assert connect(out).execute("SELECT COUNT(*) FROM trees WHERE status = 'complete'").fetchone()[0] == 3


async def test_bad_inputs_change_nothing(tmp_path: Path) -> None:
    good, out = tmp_path / "good.db", tmp_path / "out.db"
    await grow_db(good, personas=2)
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    plain = tmp_path / "plain.db"
    with sqlite3.connect(plain) as c:
        c.execute("CREATE TABLE t (x)")
    newer = tmp_path / "newer.db"
    shutil.copy(good, newer)
    with sqlite3.connect(newer) as c:
        c.execute("PRAGMA user_version = 999")
    cases = [(tmp_path / "missing.db", "no such database"), (junk, "not an SQLite database"),
             (plain, "not an aloesim database"), (newer, "schema version 999 is newer"), (tmp_path, "is a directory")]
    # a fresh output is not even created
    for bad, reason in cases:
        with pytest.raises(InputError) as info:
            merge_databases(out, [good, bad])
        assert reason in str(info.value) and "\n" not in str(info.value)
        assert not out.exists()
    merge_databases(out, [good])
    before = counts(out)
    for bad, _ in cases:
        with pytest.raises(InputError):
            merge_databases(out, [good, bad])
    assert counts(out) == before
    with pytest.raises(ConfigError):
        merge_databases(out, [out])
    with pytest.raises(ConfigError):
        merge_databases(out, [])
    not_sqlite_out = tmp_path / "out.txt"
    not_sqlite_out.write_text("hello")
    with pytest.raises(StoreError):
        merge_databases(not_sqlite_out, [good])
    assert not_sqlite_out.read_text() == "hello"


def test_merge_command_validates_inputs_and_prints_one_line_per_input(tmp_path: Path, capsys) -> None:
    from aloesim.orchestration import compose_config

    with pytest.raises(ConfigError) as info:
        merge_cmd.run(compose_config("merge", [f"db={tmp_path / 'o.db'}"]))
    assert info.value.key == "inputs"
    a = tmp_path / "a.db"
    connect(a, create=True).close()
    assert merge_cmd.run(compose_config("merge", [f"db={tmp_path / 'o.db'}", f"inputs=[{a},{a}]"])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["input"] == str(a)


# -- aloe runs ------------------------------------------------------------------

async def test_runs_lists_differences_counts_tokens_failures_and_wall_time(tmp_path: Path, capsys) -> None:
    db = tmp_path / "r.db"
    add_personas(db, 3)
    cfg1 = cfg_for(db, "generation.trees=2", "generation.turns=2", "agents.preferred.temperature=0.2")
    cfg2 = cfg_for(db, "generation.trees=3", "generation.turns=3", "agents.preferred.temperature=0.8")
    _, _, r1 = await grow(db, cfg1, Echo())
    _, _, r2 = await grow(db, cfg2, Echo())
    add_calls(db, r1, 1)
    conn = connect(db)
    conn.execute("BEGIN")
    Runs(conn).finish(r1, "complete", {}, wall_s=12.5)
    conn.execute("UPDATE trees SET status = 'failed', error = 'x' WHERE run_id = ? AND id = "
                 "(SELECT MAX(id) FROM trees WHERE run_id = ?)", (r2, r2))
    conn.execute("COMMIT")

    runs = {r["id"]: r for r in list_run_rows(str(db))}
    assert set(runs) == {r1, r2}
    assert runs[r1]["differences"] == {"agents.preferred.temperature": 0.2, "generation.trees": 2,
                                       "generation.turns": 2}
    assert runs[r2]["differences"] == {"agents.preferred.temperature": 0.8, "generation.trees": 3,
                                       "generation.turns": 3}
    assert runs[r1]["trees"] == {"complete": 2} and runs[r2]["trees"] == {"complete": 2, "failed": 1}
    assert (runs[r1]["nodes"], runs[r2]["nodes"]) == (4, 9)
    assert (runs[r1]["llm_calls"], runs[r1]["prompt_tokens"], runs[r1]["completion_tokens"]) == (2, 150, 10)
    assert (runs[r1]["retries"], runs[r1]["call_failures"]) == (2, 1)
    assert runs[r2]["llm_calls"] == 0
    assert runs[r1]["status"] == "complete" and runs[r1]["wall_s"] == 12.5
    assert runs[r2]["wall_s"] == 0  # grown without open_run: no invocation's wall time recorded

    assert runs_cmd.run(compose(db, "format=json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [r1, r2]

    assert runs_cmd.run(compose(db)) == 0  # not a TTY under pytest: plain text
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[:3] == ["run", "kind", "status"]
    assert "agents.preferred.temperature=0.2" in text[1] and "12.50 s" in text[1] and "2: 2 complete" in text[1]
    assert "3: 2 complete, 1 failed" in text[2]

    assert runs_cmd.run(compose(db, "kind=evaluate")) == 0
    assert "no runs" in capsys.readouterr().out

    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(runs_rich_table(listed))
    rendered = console.export_text()
    assert "config differences" in rendered and "generation.turns=3" in rendered


def compose(db: Path, *overrides: str):
    from aloesim.orchestration import compose_config

    return compose_config("runs", [f"db={db}", *overrides])


def test_runs_rejects_bad_values_and_missing_databases(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        runs_cmd.run(compose(tmp_path / "x.db", "format=xml"))
    assert info.value.key == "format"
    with pytest.raises(ConfigError):
        runs_cmd.run(compose(tmp_path / "x.db", "kind=sleep"))
    with pytest.raises(StoreError):
        runs_cmd.run(compose(tmp_path / "x.db"))
    assert not (tmp_path / "x.db").exists()


def old_database(path: Path) -> Path:
    """A database as the first aloesim release wrote it (schema version 1), with one run and tree."""
    from aloesim.environment.store._schema import MIGRATIONS

    raw = sqlite3.connect(path)
    raw.executescript(MIGRATIONS[0])
    raw.execute("PRAGMA user_version = 1")
    raw.execute("INSERT INTO runs (kind, config, config_hash, status, started_at) VALUES ('generate', '{}', 'h',"
                " 'complete', 1.0)")
    for kind, text in (("profile", "old profile"), ("personality", "old personality")):
        raw.execute("INSERT INTO persona_items (kind, text, source, created_at) VALUES (?, ?, 'seed', 0)", (kind, text))
    raw.execute("INSERT INTO personas (profile_id, personality_id, created_at) VALUES (1, 2, 0)")
    raw.execute("INSERT INTO trees (run_id, persona_id, mode, turns, seed, status, created_at)"
                " VALUES (1, 1, 'path', 1, 5, 'complete', 0)")
    raw.execute("INSERT INTO nodes (tree_id, turn, branch, user_message, preferred, rejected, continued, created_at)"
                " VALUES (1, 1, '', 'hi', 'p', 'r', 'preferred', 0)")
    raw.commit()
    raw.close()
    return path


def test_older_databases_are_migrated_then_listed_and_merged(tmp_path: Path) -> None:
    from aloesim.environment.store import SCHEMA_VERSION

    if SCHEMA_VERSION < 2:
        pytest.skip("only one schema version so far")
    old = old_database(tmp_path / "old.db")
    (run,) = list_run_rows(str(old))
    assert run["nodes"] == 1 and run["trees"] == {"complete": 1}
    old2 = old_database(tmp_path / "old2.db")
    (result,) = merge_databases(tmp_path / "out.db", [old2])
    assert result.added["nodes"] == 1
