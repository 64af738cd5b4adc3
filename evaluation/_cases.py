"""Benchmark cases: evaluation profiles x evaluation personalities.

From files in the published format (one JSON string per line, for profiles
and for personalities) or from the evaluation split of the database. The
order is fixed: profile-major (case i = profile i // P with personality
i % P, P personalities), so ``benchmark.cases=N`` always takes the same N.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..environment import Persona
from ..environment.errors import InputError

__all__ = ["Case", "cases_from_db", "cases_from_files", "read_items"]


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark case: a persona the role-play user plays for K turns."""

    index: int
    profile: str
    personality: str

    def persona(self) -> Persona:
        return Persona(id=self.index, profile=self.profile, personality=self.personality, split="eval")


def read_items(path: str | Path) -> list[str]:
    """The strings of a published-format file: one JSON string per line.

    Tolerates a BOM, blank lines and several JSON strings back to back on one
    line; anything else (bad JSON, a non-string, an empty file) is an
    InputError naming file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not UTF-8 text ({exc.reason})") from None
    decoder = json.JSONDecoder()
    items: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        pos = 0
        while True:
            while pos < len(line) and line[pos].isspace():
                pos += 1
            if pos >= len(line):
                break
            try:
                value, pos = decoder.raw_decode(line, pos)
            except json.JSONDecodeError as exc:
                raise InputError(str(path), f"not a JSON string: {exc.msg}", line=lineno, column=exc.colno) from None
            if not isinstance(value, str):
                raise InputError(str(path), f"expected a JSON string, got {type(value).__name__}", line=lineno,
                                 column=pos + 1)
            if value.strip():
                items.append(value.strip())
    if not items:
        raise InputError(str(path), "holds no items")
    return items


def _product(profiles: list[str], personalities: list[str]) -> list[Case]:
    return [Case(i * len(personalities) + j, p, q)
            for i, p in enumerate(profiles) for j, q in enumerate(personalities)]


def cases_from_files(profiles: str | Path, personalities: str | Path) -> list[Case]:
    """All profile x personality cases of two published-format files."""
    return _product(read_items(profiles), read_items(personalities))


def cases_from_db(conn: sqlite3.Connection) -> list[Case]:
    """Cases from the database's evaluation split: the eval personas (by id)
    when there are any, else every eval profile x eval personality."""
    rows = conn.execute(
        "SELECT pr.text, pe.text FROM personas p"
        " JOIN persona_items pr ON pr.id = p.profile_id JOIN persona_items pe ON pe.id = p.personality_id"
        " WHERE p.split = 'eval' ORDER BY p.id"
    ).fetchall()
    if rows:
        return [Case(i, r[0], r[1]) for i, r in enumerate(rows)]
    profiles = [r[0] for r in conn.execute(
        "SELECT text FROM persona_items WHERE kind = 'profile' AND split = 'eval' ORDER BY id")]
    personalities = [r[0] for r in conn.execute(
        "SELECT text FROM persona_items WHERE kind = 'personality' AND split = 'eval' ORDER BY id")]
    return _product(profiles, personalities)


def fingerprint(cases: list[Case]) -> str:
    """A short hash of the cases' texts: part of an evaluation's identity."""
    h = hashlib.sha256()
    for c in cases:
        h.update(json.dumps([c.index, c.profile, c.personality]).encode())
    return h.hexdigest()[:16]
