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
from ..environment.personas import read_items  # the published format's reader (file:line:column errors)
from ..environment.store import Personas

__all__ = ["Case", "cases_from_db", "cases_from_files", "fingerprint", "read_items"]


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark case: a persona the role-play user plays for K turns."""

    index: int
    profile: str
    personality: str

    def persona(self) -> Persona:
        return Persona(id=self.index, profile=self.profile, personality=self.personality, split="eval")


def _product(profiles: list[str], personalities: list[str]) -> list[Case]:
    return [Case(i * len(personalities) + j, p, q)
            for i, p in enumerate(profiles) for j, q in enumerate(personalities)]


def cases_from_files(profiles: str | Path, personalities: str | Path) -> list[Case]:
    """All profile x personality cases of two published-format files."""
    return _product(read_items(profiles), read_items(personalities))


def cases_from_db(conn: sqlite3.Connection) -> list[Case]:
    """Cases from the database's evaluation split: the eval personas (by id)
    when there are any, else every eval profile x eval personality."""
    repo = Personas(conn)
    personas = repo.personas("eval")
    if personas:
        return [Case(i, p.profile, p.personality) for i, p in enumerate(personas)]
    return _product(repo.texts("profile", "eval"), repo.texts("personality", "eval"))


def fingerprint(cases: list[Case]) -> str:
    """A short hash of the cases' texts: part of an evaluation's identity."""
    h = hashlib.sha256()
    for c in cases:
        h.update(json.dumps([c.index, c.profile, c.personality]).encode())
    return h.hexdigest()[:16]
