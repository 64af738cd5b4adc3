"""The bottom helpers every room relies on: values made safe to store
(``safe_text``, ``safe_count``, ``plain_json``) and the checks of a user's
text files (``decode_utf8``, ``check_json_line``, ``check_text_line``)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from aloesim.core import (
    MAX_COUNT,
    check_json_line,
    check_text_line,
    decode_utf8,
    plain_json,
    refused_char,
    safe_count,
    safe_seconds,
    safe_text,
)
from aloesim.core.errors import InputError, ServerError


def test_safe_text_replaces_only_lone_surrogates() -> None:
    assert safe_text("a cut emoji \ud83d") == "a cut emoji \ufffd"
    assert safe_text("\udc00x\ud800") == "\ufffdx\ufffd"
    ok = "pair 😀, é, 漢字, NUL \x00 and ESC \x1b kept"
    assert safe_text(ok) is ok
    conn = sqlite3.connect(":memory:")  # what failed before: SQLite cannot encode a lone surrogate
    with pytest.raises(UnicodeEncodeError):
        conn.execute("SELECT ?", ("\ud83d",))
    assert conn.execute("SELECT ?", (safe_text("\ud83d"),)).fetchone() == ("\ufffd",)


@pytest.mark.parametrize(("value", "expected"), [
    (7, 7), (7.9, 7), (-5, 0), (10**30, MAX_COUNT), (float("inf"), MAX_COUNT), (float("-inf"), 0),
    (float("nan"), 0), ("12", 12), (" 12 ", 12), ("many", 0), ("-3", 0), ("1.5", 0), ("²", 0), ("9" * 50, MAX_COUNT),
    (None, 0), (True, 0), ([3], 0), ({"n": 3}, 0),
])
def test_safe_count_is_an_int_in_range(value: object, expected: int) -> None:
    got = safe_count(value)
    assert got == expected and type(got) is int


def test_counts_and_seconds_fit_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(OverflowError):
        conn.execute("SELECT ?", (10**30,))
    assert conn.execute("SELECT ? * 1000000", (safe_count(10**30),)).fetchone()[0] == MAX_COUNT * 1_000_000
    assert safe_seconds(1.5) == 1.5 and safe_seconds(float("nan")) is None and safe_seconds(-1) is None
    assert safe_seconds("x") is None and safe_seconds(10**400) is None


def test_plain_json_is_storable() -> None:
    deep: list = []
    cursor = deep
    for _ in range(100):
        cursor.append([])
        cursor = cursor[0]
    value = {"t": "x\ud800", "f": float("nan"), "n": [1, 2.5, True, None], "o": object(), "deep": deep,
             "\udcff": 1}
    out = plain_json(value)
    json.dumps(out, allow_nan=False).encode("utf-8")  # valid JSON, valid UTF-8
    assert out["t"] == "x\ufffd" and out["f"] is None and out["o"] is None and out["n"] == [1, 2.5, True, None]
    assert out["\ufffd"] == 1


@pytest.mark.parametrize(("char", "word"), [
    (chr(0xD800), "surrogate"), (chr(0xDFFF), "surrogate"), ("\ufffe", "noncharacter"), ("\uffff", "noncharacter"),
    ("\ufdd0", "noncharacter"), ("\U0010ffff", "noncharacter"), ("\x00", "NUL"), ("\x1b", "control"),
    ("\x7f", "control"), ("\x85", "control"), ("\x08", "control"),
])
def test_refused_characters(char: str, word: str) -> None:
    assert word in (refused_char(char) or "")


@pytest.mark.parametrize("char", ["a", "\t", "\n", "\r", "\ufeff", "é", "😀", "\u202e", "\ufffd"])
def test_accepted_characters(char: str) -> None:
    assert refused_char(char) is None


@pytest.mark.parametrize(("line", "column", "what"), [
    ('"bad \\ud800 here"', 6, "U+D800"),
    ('"bad \\udc00"', 6, "U+DC00"),
    ('"ok \\ud83d\\ude00 then \\ud83d"', 23, "U+D83D"),  # a pair is fine, the lone one after is not
    ('"x", "\\u0000"', 7, "NUL"),
    ('"raw \x00 nul"', 6, "NUL"),
    ('{"a": ["\\uFFFF"]}', 9, "U+FFFF"),
    ('"\\b"', 2, "U+0008"),
])
def test_check_json_line_points_at_the_character(line: str, column: int, what: str) -> None:
    json.loads(f"[{line}]", strict=False)  # the lines are valid JSON: only the characters are refused
    with pytest.raises(InputError) as info:
        check_json_line("f.jsonl", line, 3)
    err = info.value
    assert (err.path, err.line, err.column) == ("f.jsonl", 3, column) and what in err.reason, str(err)


@pytest.mark.parametrize("line", ['"plain"', '"\\\\u0000 is a backslash then text"', '"\\n\\t\\r ok"',
                                  '"\\u00e9 \\ud83d\\ude00"', '{"k": "\\/"}'])
def test_check_json_line_accepts_clean_lines(line: str) -> None:
    check_json_line("f.jsonl", line, 1)


def test_check_text_line_and_decode() -> None:
    with pytest.raises(InputError, match=r"f.csv:2:4: the text holds a control character \(U\+001B\)"):
        check_text_line("f.csv", "ab,\x1b[2J", 2)
    check_text_line("f.csv", "case,turn,score\r", 1)
    assert decode_utf8("f", "é\n".encode()) == "é\n"
    with pytest.raises(InputError, match=r"f:2:3: not UTF-8 text \(byte 0xff\)"):
        decode_utf8("f", b"ok\nab\xffc")
    for data, name in (("x".encode("utf-16"), "UTF-16"), ("x".encode("utf-32"), "UTF-32")):
        with pytest.raises(InputError, match=f"f:1:1: the file is {name} text"):
            decode_utf8("f", data)


def test_an_error_line_ends_with_its_next_step() -> None:
    err = ServerError("llama.cpp server on 127.0.0.1:1", "exited with code -9")
    assert str(err.with_hint("re-run with retry_failed=true")) == (
        "server error: llama.cpp server on 127.0.0.1:1: exited with code -9; re-run with retry_failed=true")
