"""Export of hand-built trees: exact messages per format, filters, manifest, determinism."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from aloesim.core.errors import ConfigError, InputError, StoreError
from aloesim.environment.store import connect
from aloesim.training import ExportFilter, export_dataset, load_dataset, parse_runs, verify_export
from tests.support.training_trees import add_node, add_persona, add_run, add_tree


def U(c: str) -> dict[str, str]:
    return {"role": "user", "content": c}


def A(c: str) -> dict[str, str]:
    return {"role": "assistant", "content": c}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# Expected prompts, in export order: path tree (turns 1..3), full tree ('' then p then r), other run.
PROMPTS = [
    [U("m[root]")],
    [U("m[root]"), A("p[root]"), U("m[p]")],
    # turn 2 continued the REJECTED reply: s_2 = r_2, and m_3 is the turn-3 message (not m_1 again)
    [U("m[root]"), A("p[root]"), U("m[p]"), A("r[p]"), U("m[pr]")],
    [U("m[Froot]")],
    [U("m[Froot]"), A("p[Froot]"), U("m[Fp]")],
    [U("m[Froot]"), A("r[Froot]"), U("m[Fr]")],
    [U("m[Oroot]")],
]
TAGS = ["root", "p", "pr", "Froot", "Fp", "Fr", "Oroot"]


def test_exact_messages_for_every_format(tree_db, tmp_path):
    db, _ = tree_db
    res = export_dataset(db, tmp_path / "out")
    out = tmp_path / "out"
    sft, rej, dpo = lines(out / "sft.jsonl"), lines(out / "sft_rejected.jsonl"), lines(out / "dpo.jsonl")
    assert sft == [{"prompt": p, "completion": [A(f"p[{t}]")]} for p, t in zip(PROMPTS, TAGS)]
    assert rej == [{"prompt": p, "completion": [A(f"r[{t}]")]} for p, t in zip(PROMPTS, TAGS)]
    assert dpo == [{"prompt": p, "chosen": [A(f"p[{t}]")], "rejected": [A(f"r[{t}]")]} for p, t in zip(PROMPTS, TAGS)]
    assert res.counts == {"sft": 7, "sft_rejected": 7, "dpo": 7}


def test_failed_trees_only_with_include_incomplete(tree_db, tmp_path):
    db, _ = tree_db
    export_dataset(db, tmp_path / "all", ExportFilter(include_incomplete=True))
    sft = lines(tmp_path / "all" / "sft.jsonl")
    assert len(sft) == 8
    assert [U("m[Xroot]")] in [r["prompt"] for r in sft]


def test_run_filter(tree_db, tmp_path):
    db, ids = tree_db
    res = export_dataset(db, tmp_path / "r2", ExportFilter(runs=(ids["run2"],)))
    assert lines(tmp_path / "r2" / "sft.jsonl") == [{"prompt": [U("m[Oroot]")], "completion": [A("p[Oroot]")]}]
    assert res.manifest["source_runs"] == [ids["run2"]]


def test_manifest_hashes_and_counts(tree_db, tmp_path):
    db, ids = tree_db
    out = tmp_path / "out"
    export_dataset(db, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["format_version"] == 1
    assert m["source_runs"] == [ids["run1"], ids["run2"]]
    assert m["trees"] == 3 and m["nodes"] == 7
    assert m["turns"] == {"1": 3, "2": 3, "3": 1}
    for name in ("sft.jsonl", "sft_rejected.jsonl", "dpo.jsonl"):
        data = (out / name).read_bytes()
        assert m["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert m["files"][name]["examples"] == len(data.splitlines()) == 7
    assert sorted(p.name for p in out.iterdir()) == ["dpo.jsonl", "manifest.json", "sft.jsonl", "sft_rejected.jsonl"]
    verify_export(out)
    with (out / "dpo.jsonl").open("a") as fh:
        fh.write("\n")
    with pytest.raises(InputError, match="sha256"):
        verify_export(out)


def test_byte_identical_across_identical_dbs(tree_db, tmp_path):
    db, _ = tree_db
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    export_dataset(db, tmp_path / "a")
    export_dataset(copy, tmp_path / "b")
    for name in ("sft.jsonl", "sft_rejected.jsonl", "dpo.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_empty_selection_writes_nothing(tmp_path):
    db = tmp_path / "e.db"
    conn = connect(db, create=True)
    run = add_run(conn)
    t = add_tree(conn, run, add_persona(conn, 1), status="running")
    add_node(conn, t, "", "preferred", parent=None)
    conn.close()
    with pytest.raises(InputError, match="no complete trees"):
        export_dataset(db, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_run_and_missing_db(tree_db, tmp_path):
    db, _ = tree_db
    with pytest.raises(ConfigError, match="export.run"):
        export_dataset(db, tmp_path / "out", ExportFilter(runs=(999,)))
    with pytest.raises(StoreError, match="no such database"):
        export_dataset(tmp_path / "missing.db", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "missing.db").exists()


def test_missing_ancestor_is_a_store_error(tmp_path):
    db = tmp_path / "broken.db"
    conn = connect(db, create=True)
    t = add_tree(conn, add_run(conn), add_persona(conn, 1))
    add_node(conn, t, "", "preferred", parent=None)
    add_node(conn, t, "pp", "preferred", parent=None)  # its parent 'p' is missing
    conn.close()
    with pytest.raises(StoreError, match="no ancestor at branch 'p'"):
        export_dataset(db, tmp_path / "out")
    # the failed export left no partial or final files
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_reexport_replaces_previous_files(tree_db, tmp_path):
    db, ids = tree_db
    out = tmp_path / "out"
    export_dataset(db, out)
    export_dataset(db, out, ExportFilter(runs=(ids["run2"],)))
    assert len(lines(out / "sft.jsonl")) == 1
    verify_export(out)


@pytest.mark.parametrize(("value", "expected"), [(None, ()), (3, (3,)), ("4", (4,)), ([2, 1, 2], (1, 2))])
def test_parse_runs(value, expected):
    assert parse_runs(value) == expected


@pytest.mark.parametrize("value", ["x", 0, -1, [1, "y"], True])
def test_parse_runs_rejects(value):
    with pytest.raises(ConfigError, match="export.run"):
        parse_runs(value)


def test_load_dataset_from_dir_and_db(tree_db, tmp_path):
    db, _ = tree_db
    export_dataset(db, tmp_path / "out")
    for source in (tmp_path / "out", db):
        sft = load_dataset(source, "sft")
        assert len(sft) == 7 and sft.column_names == ["prompt", "completion"]
        assert sft[2]["prompt"] == PROMPTS[2]
        dpo = load_dataset(source, kind="dpo")
        assert dpo.column_names == ["prompt", "chosen", "rejected"]
        assert dpo[5] == {"prompt": PROMPTS[5], "chosen": [A("p[Fr]")], "rejected": [A("r[Fr]")]}
        assert load_dataset(source, "sft_rejected")[0]["completion"] == [A("r[root]")]
    with pytest.raises(ConfigError, match="kind"):
        load_dataset(db, "ppo")



def test_older_schema_is_migrated_then_read(tmp_path):
    import sqlite3

    from aloesim.environment.store import SCHEMA_VERSION
    from aloesim.environment.store._schema import MIGRATIONS

    if SCHEMA_VERSION < 2:
        pytest.skip("only one schema version so far")
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.executescript(MIGRATIONS[0])  # a database written by the first aloesim release
    raw.execute("PRAGMA user_version = 1")
    t = add_tree(raw, add_run(raw), add_persona(raw, 1))
    add_node(raw, t, "", "preferred", parent=None)
    raw.commit()
    raw.close()
    res = export_dataset(db, tmp_path / "out")
    assert res.counts["sft"] == 1
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()
