"""Merging aloesim databases (e.g. one per shard) into one, without duplicates.

Every input is checked before the output is touched (it exists, is an
aloesim database of this or an older schema version, which is then
migrated as every command does, passes SQLite's quick check, is not the
output). Then each
input is copied in ONE transaction on the output: rows are matched to rows
already there by a natural key, new rows get new ids, and every reference
(run, persona item, persona, tree, parent node, evaluation, case) is
remapped. Merging the same input twice adds nothing.

Natural keys (the row already in the output that a row of the input is):

    runs           kind, config_hash, started_at   (distinct invocations stay distinct)
    persona_items  kind, split, text
    personas       profile text, personality text  (through the items)
    trees          run, persona
    nodes          tree, branch
    evaluations    run, label, created_at
    eval_cases     evaluation, case_index
    eval_turns     case, turn
    judge_probes   evaluation, kind, probe
    checkpoints    path, stage, created_at
    llm_calls      run, role, created_at, tree, turn, branch, case, request
    events         run, tree, kind, created_at, payload
    llm_cache      key
    llm_batches    the provider's batch id (kept as is)
    llm_batch_requests  cache key, batch id

A matched run, tree, evaluation case or batch takes the input's state when the input is further
along (a later finish, a complete tree or case, a batch state seen later), so merging a newer copy of the
same database brings it up to date. Run leases (``run_leases``) are not
copied: they belong to the processes of the input's machine.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError, InputError, StoreError
from ._batches import Batches
from ._runs import Runs
from ._schema import SCHEMA_VERSION
from ._store import connect
from ._trees import Trees

Row = dict[str, Any]


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: tuple[str, ...]
    refs: dict[str, str] = field(default_factory=dict)   # column -> table whose ids it holds
    order: str = "id"
    has_id: bool = True


TABLES: tuple[TableSpec, ...] = (
    TableSpec("runs", ("kind", "config_hash", "started_at")),
    TableSpec("persona_items", ("kind", "split", "text"), {"run_id": "runs"}),
    TableSpec("personas", ("profile_id", "personality_id"),
              {"profile_id": "persona_items", "personality_id": "persona_items"}),
    TableSpec("trees", ("run_id", "persona_id"), {"run_id": "runs", "persona_id": "personas"}),
    TableSpec("nodes", ("tree_id", "branch"), {"tree_id": "trees", "parent_id": "nodes"}, order="tree_id, turn, id"),
    TableSpec("evaluations", ("run_id", "label", "created_at"), {"run_id": "runs"}),
    TableSpec("eval_cases", ("evaluation_id", "case_index"), {"evaluation_id": "evaluations"}),
    TableSpec("eval_turns", ("case_id", "turn"), {"case_id": "eval_cases"}),
    TableSpec("judge_probes", ("evaluation_id", "kind", "probe"), {"evaluation_id": "evaluations"}),
    TableSpec("checkpoints", ("path", "stage", "created_at"), {"run_id": "runs"}),
    TableSpec("llm_calls", ("run_id", "role", "created_at", "tree_id", "turn", "branch", "case_id", "request"),
              {"run_id": "runs", "tree_id": "trees", "case_id": "eval_cases"}),
    TableSpec("events", ("run_id", "tree_id", "kind", "created_at", "payload"), {"run_id": "runs", "tree_id": "trees"}),
    TableSpec("llm_cache", ("key",), order="key", has_id=False),
    # the batch mode's journal: a batch id is the provider's, the same in every database
    TableSpec("llm_batches", ("id",), order="created_at, id", has_id=False),
    TableSpec("llm_batch_requests", ("cache_key", "batch_id"), order="batch_id, cache_key", has_id=False),
)

# columns a matched row takes from the input when the input is further along
_TREE_RANK = {"pending": 0, "running": 1, "failed": 2, "complete": 3}
_CASE_RANK = {"pending": 0, "failed": 1, "complete": 2}


@dataclass
class MergeResult:
    path: str
    added: dict[str, int] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"input": self.path, "added": self.added, "matched": self.matched, "updated": self.updated}


def _digest(values: Sequence[Any]) -> bytes:
    return hashlib.blake2b(json.dumps(list(values), default=str).encode(), digest_size=16).digest()


def check_input(path: str | Path, out: Path) -> None:
    """Raise a one-line error unless ``path`` is a usable aloesim database other than ``out``."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), "no such database")
    if p.is_dir():
        raise InputError(str(p), "is a directory, not a database file")
    if out.exists() and p.resolve() == out.resolve():
        raise ConfigError("inputs", str(path), "databases other than the output db")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        reason = "is not an SQLite database" if "not a database" in str(exc) else str(exc)
        raise InputError(str(p), reason) from None
    # tables added by a migration may be absent yet (an older database is migrated below)
    missing = {t.name for t in TABLES} - tables - {"judge_probes", "llm_batches", "llm_batch_requests"}
    if version == 0 or missing:
        raise InputError(str(p), "is not an aloesim database (no aloesim tables)")
    if version > SCHEMA_VERSION:
        raise InputError(str(p), f"schema version {version} is newer than this aloesim understands "
                                 f"({SCHEMA_VERSION}); upgrade aloesim")
    if ok != "ok":
        raise InputError(str(p), f"fails the SQLite integrity check: {ok}")
    if version < SCHEMA_VERSION:
        connect(p).close()  # an older aloesim database: migrated, as every command does


class _Merger:
    """Copies one input into the output connection (inside the caller's transaction)."""

    def __init__(self, out: sqlite3.Connection, src: sqlite3.Connection, path: str) -> None:
        self.out, self.src, self.path = out, src, path
        self.ids: dict[str, dict[int, int]] = {t.name: {} for t in TABLES}
        self.result = MergeResult(path)

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.out.execute(f"PRAGMA table_info({table})")]

    def remap(self, spec: TableSpec, row: Row) -> Row:
        row = dict(row)
        for col, target in spec.refs.items():
            old = row.get(col)
            if old is None:
                continue
            new = self.ids[target].get(old)
            if new is None:
                nullable = not self.out.execute(
                    f"SELECT \"notnull\" FROM pragma_table_info('{spec.name}') WHERE name = ?", (col,)).fetchone()[0]
                if not nullable:
                    raise InputError(self.path, f"{spec.name} row {row.get('id')}: {col}={old} refers to a missing "
                                                f"{target} row")
                new = None  # a dangling optional reference (e.g. a log line of a deleted tree)
            row[col] = new
        if spec.name == "events":
            row["payload"] = self._event_payload(row["payload"])
        if spec.name == "checkpoints":
            row["source_runs"] = self._runs_list(row["source_runs"])
        return row

    def _event_payload(self, payload: str) -> str:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            return payload
        if isinstance(data, dict) and isinstance(data.get("tree_id"), int):
            data["tree_id"] = self.ids["trees"].get(data["tree_id"], data["tree_id"])
            return json.dumps(data, ensure_ascii=False)
        return payload

    def _runs_list(self, text: str) -> str:
        try:
            runs = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(runs, list):
            return json.dumps([self.ids["runs"].get(r, r) if isinstance(r, int) else r for r in runs])
        return text

    def existing(self, spec: TableSpec) -> dict[bytes, Row]:
        cols = ", ".join(dict.fromkeys(("id", *spec.key) if spec.has_id else spec.key))
        extra = {"runs": ", status, finished_at", "trees": ", status", "eval_cases": ", status",
                 "llm_batches": ", updated_at"}.get(spec.name, "")
        out = {}
        for r in self.out.execute(f"SELECT {cols}{extra} FROM {spec.name}"):
            row = dict(r)
            out[_digest([row[k] for k in spec.key])] = row
        return out

    def copy(self, spec: TableSpec) -> None:
        cols = self.columns(spec.name)
        insert_cols = [c for c in cols if c != "id" or not spec.has_id]  # a provider's id is kept
        sql = (f"INSERT INTO {spec.name} ({', '.join(insert_cols)}) VALUES ({', '.join('?' * len(insert_cols))})")
        have = self.existing(spec)
        added = matched = updated = 0
        for r in self.src.execute(f"SELECT {', '.join(cols)} FROM {spec.name} ORDER BY {spec.order}"):
            row = self.remap(spec, dict(r))
            key = _digest([row[k] for k in spec.key])
            found = have.get(key)
            if found is None:
                cur = self.out.execute(sql, [row[c] for c in insert_cols])
                if spec.has_id:
                    self.ids[spec.name][r["id"]] = cur.lastrowid
                    have[key] = {**{k: row[k] for k in spec.key}, "id": cur.lastrowid}
                else:
                    have[key] = row
                added += 1
                continue
            matched += 1
            if spec.has_id:
                self.ids[spec.name][r["id"]] = found["id"]
            updated += self.refresh(spec, found, row)
        self.result.added[spec.name] = added
        self.result.matched[spec.name] = matched
        if updated:
            self.result.updated[spec.name] = updated

    def refresh(self, spec: TableSpec, found: Row, row: Row) -> int:
        """Bring a matched run, tree or batch up to the input's state when the input is further along."""
        if spec.name == "runs" and row["finished_at"] is not None and (
                found.get("finished_at") is None or row["finished_at"] > found["finished_at"]):
            Runs(self.out).take_state(found["id"], row["status"], row["finished_at"], row["stats"], row["wall_s"],
                                      row["invocations"])
            return 1
        if spec.name == "trees" and _TREE_RANK.get(row["status"], 0) > _TREE_RANK.get(found.get("status"), 0):
            Trees(self.out).take_state(found["id"], row["status"], row["error"], row["finished_at"])
            return 1
        if spec.name == "eval_cases" and _CASE_RANK.get(row["status"], 0) > _CASE_RANK.get(found.get("status"), 0):
            self.out.execute("UPDATE eval_cases SET status = ?, error = ? WHERE id = ?",
                             (row["status"], row["error"], found["id"]))
            return 1
        if spec.name == "llm_batches" and row["updated_at"] > found["updated_at"]:
            Batches(self.out).set_state(row["id"], row["state"], at=row["updated_at"])
            found["updated_at"] = row["updated_at"]
            return 1
        return 0


def merge_databases(out_path: str | Path, inputs: Sequence[str | Path],
                    on_input: Callable[[MergeResult], None] | None = None) -> list[MergeResult]:
    """Merge every input into ``out_path`` (created if missing), one transaction per input."""
    out = Path(out_path)
    if not inputs:
        raise ConfigError("inputs", list(inputs), "a non-empty list of database files, e.g. inputs=[a.db,b.db]")
    for path in inputs:  # every input is checked before the output is created or touched
        check_input(path, out)
    conn = connect(out, create=True)
    results = []
    try:
        for path in inputs:
            src = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, isolation_level=None)
            src.row_factory = sqlite3.Row
            try:
                src.execute("BEGIN")  # one consistent snapshot, even if a writer is still running
                conn.execute("BEGIN IMMEDIATE")
                try:
                    merger = _Merger(conn, src, str(path))
                    for spec in TABLES:
                        merger.copy(spec)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(str(path), f"merge failed, nothing of it was written: {exc}") from None
            finally:
                src.close()
            results.append(merger.result)
            if on_input is not None:
                on_input(merger.result)
    finally:
        conn.close()
    return results


# -- shards (the Ray engine): cut a run's share out of a database, to merge back later --

TREE_TABLES = (  # (table, WHERE over the source rows, given the shard's tree ids and run id)
    ("runs", "id = :run"),
    ("persona_items", ("id IN (SELECT p.profile_id FROM src.personas p JOIN src.trees t ON t.persona_id = p.id"
                       " WHERE t.id IN (SELECT value FROM json_each(:ids))) OR id IN (SELECT p.personality_id FROM src.personas p"
                       " JOIN src.trees t ON t.persona_id = p.id WHERE t.id IN (SELECT value FROM json_each(:ids)))")),
    ("personas", "id IN (SELECT persona_id FROM src.trees WHERE id IN (SELECT value FROM json_each(:ids)))"),
    ("trees", "id IN (SELECT value FROM json_each(:ids))"),
    ("nodes", "tree_id IN (SELECT value FROM json_each(:ids))"),
)
EVAL_TABLES = (  # an evaluation's shard: the run, its evaluation, the shard's cases and their stored turns
    ("runs", "id = :run"),
    ("evaluations", "run_id = :run"),
    ("eval_cases", "id IN (SELECT value FROM json_each(:ids))"),
    ("eval_turns", "case_id IN (SELECT value FROM json_each(:ids))"),
)


def shard_database(db: Path, run_id: int, tree_ids: list[int], out: Path, tables: tuple = TREE_TABLES) -> bytes:
    """A database holding the run row, personas, trees and committed nodes of
    ``tree_ids`` (with the ids of ``db``), as bytes (``tables=EVAL_TABLES``: ``tree_ids``
    are an evaluation's case ids)."""
    conn = connect(out, create=True)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("ATTACH DATABASE ? AS src", (str(db),))
        ids = json.dumps([int(i) for i in tree_ids])
        conn.execute("BEGIN")
        for table, where in tables:
            cols = ",".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
            conn.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}"  # our table names
                         f" WHERE {where}", {"run": run_id, "ids": ids})
        conn.execute("UPDATE persona_items SET run_id = NULL WHERE run_id IS NOT NULL AND run_id != ?", (run_id,))
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return out.read_bytes()


def database_bytes(db: Path) -> bytes:
    """A database file's bytes, its WAL folded in first (a shard shipped back)."""
    conn = connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return db.read_bytes()
