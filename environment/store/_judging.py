"""Reads and writes of the judge's instruments: the validity probes of an
evaluation (``judge_probes``) and the score distributions of its turns
(``eval_turns.score_dist``, ``score_expected``, ``score_mass``).

Every statement on these columns lives here (to be folded into the
evaluations repository)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ._store import Store

__all__ = ["ProbeRow", "probe_rows", "save_probe", "set_distribution", "turn_distributions"]


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


async def probe_rows(store: Store, evaluation_id: int) -> list[ProbeRow]:
    """Every stored probe of an evaluation, by kind then index."""
    rows = await store.fetchall(
        "SELECT kind, probe, case_a, case_b, first, second, outcome, error, detail FROM judge_probes"
        " WHERE evaluation_id = ? ORDER BY kind, probe", (evaluation_id,))
    return [ProbeRow(r["kind"], int(r["probe"]), r["case_a"], r["case_b"], r["first"], r["second"], r["outcome"],
                     r["error"], json.loads(r["detail"])) for r in rows]


async def save_probe(store: Store, evaluation_id: int, row: ProbeRow) -> None:
    """Store (or replace, when it is run again) one probe's result."""
    params = (evaluation_id, row.kind, row.probe, row.case_a, row.case_b, json.dumps(row.detail, ensure_ascii=False),
              row.first, row.second, row.outcome, row.error, time.time())

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO judge_probes (evaluation_id, kind, probe, case_a, case_b, detail, first, second, outcome,"
            " error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (evaluation_id, kind, probe) DO UPDATE SET case_a = excluded.case_a,"
            " case_b = excluded.case_b, detail = excluded.detail, first = excluded.first, second = excluded.second,"
            " outcome = excluded.outcome, error = excluded.error, created_at = excluded.created_at", params)

    await store.write(write)


def set_distribution(conn: sqlite3.Connection, case_id: int, turn: int, distribution: Any, expected: float | None,
                     mass: float | None) -> None:
    """Inside the write that stores a turn: its judge's distribution (nothing when there is none)."""
    if expected is None:
        return
    conn.execute("UPDATE eval_turns SET score_dist = ?, score_expected = ?, score_mass = ? WHERE case_id = ? AND turn = ?",
                 (json.dumps(list(distribution)), expected, mass, case_id, turn))


async def turn_distributions(store: Store, evaluation_id: int
                             ) -> dict[tuple[int, int], tuple[float, list[float], float | None]]:
    """{(case_index, turn): (expected score, [P(1)..P(5)], mass)} for the turns
    whose judge returned a distribution."""
    rows = await store.fetchall(
        "SELECT c.case_index, t.turn, t.score_expected, t.score_dist, t.score_mass FROM eval_turns t"
        " JOIN eval_cases c ON c.id = t.case_id WHERE c.evaluation_id = ? AND t.score_expected IS NOT NULL",
        (evaluation_id,))
    return {(int(r[0]), int(r[1])): (float(r[2]), json.loads(r[3]), r[4]) for r in rows}
