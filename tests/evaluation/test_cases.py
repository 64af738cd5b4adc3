"""Benchmark cases: the published file format and the fixed case order."""

from __future__ import annotations

import pytest

from aloesim.core.errors import InputError
from aloesim.environment.store import connect
from aloesim.evaluation import cases_from_db, cases_from_files, read_items


def test_read_items_tolerates_real_file_flaws(tmp_path) -> None:
    f = tmp_path / "profiles.jsonl"
    f.write_bytes('\ufeff"She is 34."\n\n"He runs." "Two on one line."\n  \n'.encode())
    assert read_items(f) == ["She is 34.", "He runs.", "Two on one line."]


@pytest.mark.parametrize(("text", "line", "column"), [
    ('"ok"\n"broken\n', 2, 1),
    ('"ok"\n{"a": 1}\n', 2, 1),
    ('"ok" nope\n', 1, 6),
])
def test_read_items_names_line_and_column(tmp_path, text: str, line: int, column: int) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        read_items(f)
    assert (err.value.line, err.value.column) == (line, column)
    assert str(err.value).startswith(f"input error: {f}:{line}:{column}:")


def test_missing_and_empty_files(tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_items(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="empty"):
        read_items(tmp_path / "empty.jsonl")


def test_cases_are_profile_major(tmp_path) -> None:
    (tmp_path / "p.jsonl").write_text('"P0"\n"P1"\n')
    (tmp_path / "q.jsonl").write_text('"Q0"\n"Q1"\n"Q2"\n')
    cases = cases_from_files(tmp_path / "p.jsonl", tmp_path / "q.jsonl")
    assert [(c.index, c.profile, c.personality) for c in cases] == [
        (0, "P0", "Q0"), (1, "P0", "Q1"), (2, "P0", "Q2"), (3, "P1", "Q0"), (4, "P1", "Q1"), (5, "P1", "Q2")]
    assert cases[4].persona().split == "eval"


def _item(conn, kind: str, split: str, text: str) -> int:
    return conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at) VALUES (?,?,?,?,0)",
                        (kind, split, text, "imported")).lastrowid


def test_cases_from_db_eval_split_only(tmp_path) -> None:
    conn = connect(tmp_path / "db.sqlite", create=True)
    p_train = _item(conn, "profile", "train", "train profile")
    q_train = _item(conn, "personality", "train", "train personality")
    p1 = _item(conn, "profile", "eval", "E-P1")
    p2 = _item(conn, "profile", "eval", "E-P2")
    q1 = _item(conn, "personality", "eval", "E-Q1")
    # no eval personas yet: every eval profile x eval personality
    assert [(c.profile, c.personality) for c in cases_from_db(conn)] == [("E-P1", "E-Q1"), ("E-P2", "E-Q1")]
    conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at) VALUES (?,?,'train',0)",
                 (p_train, q_train))
    conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at) VALUES (?,?,'eval',0)", (p2, q1))
    assert [(c.index, c.profile, c.personality) for c in cases_from_db(conn)] == [(0, "E-P2", "E-Q1")]
    assert p1
    conn.close()
