"""The published JSONL format: tolerated flaws and reported errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aloesim.core.errors import InputError
from aloesim.environment.personas import read_items, write_items, write_objects


def _write(tmp_path: Path, data: bytes, name: str = "items.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_clean_file_round_trips(tmp_path: Path) -> None:
    items = ["A nurse who bakes.", 'He says "hi" \u2014 caf\u00e9, \u65e5\u672c']
    path = tmp_path / "out.jsonl"
    assert write_items(path, items) == 2
    assert path.read_text(encoding="utf-8").splitlines() == [json.dumps(i, ensure_ascii=False) for i in items]
    assert read_items(path) == items


def test_bom_blank_lines_and_two_values_per_line(tmp_path: Path) -> None:
    data = ("\ufeff" + '"first"\n\n   \n"second" "third"\r\n"fourth"\t"fifth"\n\ufeff"sixth"\n').encode("utf-8")
    assert read_items(_write(tmp_path, data)) == ["first", "second", "third", "fourth", "fifth", "sixth"]


def test_values_back_to_back_without_space(tmp_path: Path) -> None:
    assert read_items(_write(tmp_path, b'"a b""c d"\n')) == ["a b", "c d"]


@pytest.mark.parametrize(
    ("data", "line", "column", "reason"),
    [
        (b'"ok"\n"bad\n', 2, 1, "invalid JSON"),                      # unterminated string
        (b'"ok"\n"ok" "x" oops\n', 2, 10, "invalid JSON"),           # junk after two good values
        (b'"ok"\n\n{"a": 1}\n', 3, 1, "got dict"),                    # an object, not a string
        (b'"ok" 42\n', 1, 6, "got int"),
        (b'"ok"\nnull\n', 2, 1, "got null"),
        (b'"ok"\n"   "\n', 2, 1, "empty string"),
        (b'"ok"\n"caf\xe9"\n', 2, 5, "not UTF-8"),                    # latin-1 byte
    ],
)
def test_unreadable_values_name_file_line_column(tmp_path: Path, data: bytes, line: int, column: int, reason: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as info:
        read_items(path)
    err = info.value
    assert (err.path, err.line, err.column) == (str(path), line, column)
    assert reason in err.reason
    assert str(err).startswith(f"input error: {path}:{line}:{column}: ")
    assert "\n" not in str(err)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", "\ufeff\n".encode()])
def test_empty_file_is_an_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InputError, match="empty"):
        read_items(_write(tmp_path, data))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_items(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="directory"):
        read_items(tmp_path)


def test_write_objects_is_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_objects(path, [{"id": 1, "profile": "a", "personality": "b"}])
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"id": 1, "profile": "a", "personality": "b"}]
    assert not (tmp_path / "p.jsonl.tmp").exists()


def test_read_jsonl_names_lines_that_held_several_values(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from aloesim.environment.personas import read_jsonl

    lines = [json.dumps(f"profile {i}") for i in range(1, 8)]
    lines[5] = lines[5] + json.dumps("profile 6b")  # the published profile.jsonl: line 6 holds two profiles
    path = _write(tmp_path, ("\n".join(lines) + "\n").encode(), "profile.jsonl")
    result = read_jsonl(path)
    assert len(result.items) == 8 and result.items[5:7] == ("profile 6", "profile 6b")
    assert result.shared_lines == ((6, 2),)
    assert result.notice() == (f"{path}: line 6 held 2 JSON values; each value was read as its own item "
                               "(8 items from 7 lines)")
    with capture_logs() as logs:
        assert read_items(path) == list(result.items)
    assert [(e["log_level"], e["event"], e["shared_lines"]) for e in logs] == [("warning", result.notice(), [6])]
    clean = _write(tmp_path, b'"a"\n"b"\n', "clean.jsonl")
    assert read_jsonl(clean).shared_lines == () and read_jsonl(clean).notice() is None
    with capture_logs() as logs:
        read_items(clean)
    assert logs == []
