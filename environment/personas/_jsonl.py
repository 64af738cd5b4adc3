"""The published pool format: one JSON string per line.

Real files are not always clean, so the reader accepts a byte-order mark (at
the start of the file or of any line), CRLF line ends, blank lines, and
several JSON values back to back on one line (each is its own item: the
published ``profile.jsonl`` has a line holding two profiles; ``read_jsonl``
reports such lines so the caller can say so, and ``read_items`` logs a
warning naming them). Anything else it cannot read
(invalid JSON, a value that is not a string, an empty string, bytes that are
not UTF-8, a UTF-16/32 file, a character no text may hold: a lone surrogate
such as ``"\ud800"``, U+FFFE/U+FFFF, NUL or another control character,
written raw or escaped; a line longer than ``MAX_LINE_CHARS``, an empty file)
raises ``InputError`` naming the file, the line and the column, and nothing
of the file is returned: callers parse every file fully before they touch
the database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ...core import check_json_line, decode_utf8
from ...core.errors import InputError

__all__ = ["JsonlItems", "read_items", "read_jsonl", "write_items", "write_objects"]

log = structlog.get_logger(__name__)

_BOM = "\ufeff"
_DECODER = json.JSONDecoder()
_SPACE = " \t\r\f\v" + _BOM
MAX_LINE_CHARS = 100_000  # one persona item is a sentence or a paragraph; a longer line is a broken file


@dataclass(frozen=True)
class JsonlItems:
    """The items of one file, and the lines that held more than one JSON
    value as (line, values) pairs (each value was read as its own item)."""

    path: str
    items: tuple[str, ...]
    shared_lines: tuple[tuple[int, int], ...] = ()

    def notice(self) -> str | None:
        """One sentence about the shared lines, or None if there are none."""
        if not self.shared_lines:
            return None
        shown = ", ".join(f"line {line} held {n} JSON values" for line, n in self.shared_lines[:5])
        more = f" (and {len(self.shared_lines) - 5} more lines)" if len(self.shared_lines) > 5 else ""
        extra = sum(n - 1 for _, n in self.shared_lines)
        return (f"{self.path}: {shown}{more}; each value was read as its own item "
                f"({len(self.items)} items from {len(self.items) - extra} lines)")


def read_items(path: str | os.PathLike[str]) -> list[str]:
    """Every JSON string of a JSONL file, in file order, stripped of outer
    whitespace. Raises InputError (file, line, column) on anything unreadable;
    logs a warning naming any line that held more than one value."""
    result = read_jsonl(path)
    if (notice := result.notice()) is not None:
        log.warning(notice, file=result.path, shared_lines=[line for line, _ in result.shared_lines])
    return list(result.items)


def read_jsonl(path: str | os.PathLike[str]) -> JsonlItems:
    """``read_items`` without the warning: the items and the shared lines."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError(str(path), "is a directory, not a JSONL file") from None
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot be read ({exc.strerror})") from None
    text = decode_utf8(path, raw)
    items: list[str] = []
    shared: list[tuple[int, int]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise InputError(str(path), f"line is {len(line):,} characters long; at most {MAX_LINE_CHARS:,}"
                             " allowed (one item per line)", lineno)
        check_json_line(path, line, lineno)  # a lone surrogate, U+FFFF, NUL, ... raw or escaped
        pos, on_line = 0, 0
        while True:
            while pos < len(line) and line[pos] in _SPACE:
                pos += 1
            if pos >= len(line):
                break
            try:
                value, end = _DECODER.raw_decode(line, pos)
            except json.JSONDecodeError as exc:
                raise InputError(str(path), f"invalid JSON: {exc.msg}", lineno, exc.pos + 1) from None
            if not isinstance(value, str):
                kind = type(value).__name__ if value is not None else "null"
                raise InputError(str(path), f"expected a JSON string, got {kind}", lineno, pos + 1)
            if not value.strip():
                raise InputError(str(path), "empty string", lineno, pos + 1)
            items.append(value.strip())
            on_line += 1
            pos = end
        if on_line > 1:
            shared.append((lineno, on_line))
    if not items:
        raise InputError(str(path), "file is empty (expected one JSON string per line)")
    return JsonlItems(str(path), tuple(items), tuple(shared))


def write_items(path: str | os.PathLike[str], items: Iterable[str]) -> int:
    """Write one JSON string per line (UTF-8, no BOM). Returns the count."""
    return write_objects(path, items)


def write_objects(path: str | os.PathLike[str], values: Iterable[object]) -> int:
    """Write one JSON value per line, atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for value in values:
            fh.write(json.dumps(value, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
