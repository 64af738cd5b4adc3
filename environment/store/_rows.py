"""Small helpers the repositories share: typed rows from ``sqlite3.Row``,
the one JSON encoding and its tolerant reader."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def loads(text: str | bytes | None) -> Any:
    """Parse JSON stored in a column; keep the text when it is not JSON
    (a hand-edited or foreign database must still be readable)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def dumps(value: Any) -> str:
    """The one JSON encoding of stored configs, stats and payloads."""
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def row_as(cls: type[T], row: sqlite3.Row, **parsed: Any) -> T:
    """A frozen dataclass from a row whose column names are its field names;
    ``parsed`` overrides columns that need decoding (JSON, booleans)."""
    return cls(**{f.name: parsed[f.name] if f.name in parsed else row[f.name] for f in fields(cls)})  # type: ignore[arg-type]
