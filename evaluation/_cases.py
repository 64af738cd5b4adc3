"""Benchmark cases: evaluation profiles x evaluation personalities.

From files in the published format (one JSON string per line, for profiles
and for personalities) or from the evaluation split of the database. The
order is fixed: profile-major (case i = profile i // P with personality
i % P, P personalities), so ``benchmark.cases=N`` always takes the same N.
``case_set_from_files`` may pair each profile with only the first N
personalities (the paper's ALOE set: 20 profiles x the first 5 of the 7
published personalities = 100 cases) and describes the set it made (name,
count, the files with their SHA-256) for the report.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..environment import Persona
from ..environment.personas import read_items  # the published format's reader (file:line:column errors)
from ..environment.store import Personas

__all__ = ["Case", "CaseSet", "case_set_from_db", "case_set_from_files", "cases_from_db", "cases_from_files",
           "fingerprint", "first_cases", "read_items"]


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


@dataclass(frozen=True)
class CaseSet:
    """The cases of one evaluation and what they are (``info``: name, source,
    count, and for files each file's path, SHA-256 and item counts)."""

    cases: list[Case]
    info: dict[str, Any]


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def case_set_from_files(profiles: str | Path, personalities: str | Path, *, name: str | None = None,
                        personalities_per_profile: int | None = None) -> CaseSet:
    """Profile x personality cases of two published-format files, each profile
    with the first ``personalities_per_profile`` personalities (None = all), in
    file order. A line holding several JSON strings gives several items, as
    when the pools are imported. Raises ``InputError`` for an unreadable file."""
    profile_items, personality_items = read_items(profiles), read_items(personalities)
    used = personality_items if personalities_per_profile is None else personality_items[:personalities_per_profile]
    cases = _product(profile_items, used)
    info = {
        "name": name or "files", "source": "files", "cases": len(cases),
        "profiles": {"file": str(profiles), "sha256": _sha256(profiles), "items": len(profile_items),
                     "used": len(profile_items)},
        "personalities": {"file": str(personalities), "sha256": _sha256(personalities),
                          "items": len(personality_items), "used": len(used)},
        "fingerprint": fingerprint(cases),
    }
    return CaseSet(cases, info)


def cases_from_db(conn: sqlite3.Connection) -> list[Case]:
    """Cases from the database's evaluation split: the eval personas (by id)
    when there are any, else every eval profile x eval personality."""
    repo = Personas(conn)
    personas = repo.personas("eval")
    if personas:
        return [Case(i, p.profile, p.personality) for i, p in enumerate(personas)]
    return _product(repo.texts("profile", "eval"), repo.texts("personality", "eval"))


def case_set_from_db(conn: sqlite3.Connection, db: str | Path, *, name: str | None = None) -> CaseSet:
    """``cases_from_db`` with its description (aloesim's own evaluation personas)."""
    cases = cases_from_db(conn)
    return CaseSet(cases, {"name": name or "database eval split", "source": "database", "db": str(db),
                           "cases": len(cases), "fingerprint": fingerprint(cases)})


def first_cases(case_set: CaseSet, n: int) -> CaseSet:
    """The first ``n`` cases of a set (``benchmark.cases=N``), described as such."""
    cases = case_set.cases[:n]
    return CaseSet(cases, case_set.info | {"cases": len(cases), "of": case_set.info["cases"],
                                           "fingerprint": fingerprint(cases)})


def fingerprint(cases: list[Case]) -> str:
    """A short hash of the cases' texts: part of an evaluation's identity."""
    h = hashlib.sha256()
    for c in cases:
        h.update(json.dumps([c.index, c.profile, c.personality]).encode())
    return h.hexdigest()[:16]
