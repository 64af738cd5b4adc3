"""JudgeProbes: every statement on ``judge_probes``, the validity probes of
an evaluation's judge (``evaluation``'s judge check). The judge's score
distribution of each turn lives with the turns (``Evaluations``)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["JudgeProbes", "ProbeRow"]


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One stored judge probe (see ``evaluation``'s judge check)."""

    kind: str
    probe: int
    case_a: int | None
    case_b: int | None
    first: float | None
    second: float | None
    outcome: float | None
    error: str | None
    detail: dict[str, Any]


class JudgeProbes:
    """Every statement on ``judge_probes``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def of(self, evaluation_id: int) -> list[ProbeRow]:
        """Every stored probe of an evaluation, by kind then index."""
        rows = self.conn.execute(
            "SELECT kind, probe, case_a, case_b, first, second, outcome, error, detail FROM judge_probes"
            " WHERE evaluation_id = ? ORDER BY kind, probe", (evaluation_id,))
        return [ProbeRow(r["kind"], int(r["probe"]), r["case_a"], r["case_b"], r["first"], r["second"], r["outcome"],
                         r["error"], json.loads(r["detail"])) for r in rows]

    def save(self, evaluation_id: int, row: ProbeRow) -> None:
        """Store (or replace, when it is run again) one probe's result."""
        self.conn.execute(
            "INSERT INTO judge_probes (evaluation_id, kind, probe, case_a, case_b, detail, first, second, outcome,"
            " error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (evaluation_id, kind, probe) DO UPDATE SET case_a = excluded.case_a,"
            " case_b = excluded.case_b, detail = excluded.detail, first = excluded.first, second = excluded.second,"
            " outcome = excluded.outcome, error = excluded.error, created_at = excluded.created_at",
            (evaluation_id, row.kind, row.probe, row.case_a, row.case_b, json.dumps(row.detail, ensure_ascii=False),
             row.first, row.second, row.outcome, row.error, time.time()))
