"""Evaluations: every statement on ``evaluations``, ``eval_cases`` and ``eval_turns``."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._rows import loads, row_as

__all__ = ["CaseListing", "CaseRecord", "EvaluationListing", "EvaluationRecord", "Evaluations", "JudgedTurn",
           "TurnRecord"]

_EVAL_COLS = "id, run_id, label, model, user_model, judge_model, turns, status, report, created_at"


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One evaluation; the model identities and the report parsed (the text when not JSON)."""

    id: int
    run_id: int | None
    label: str
    model: Any
    user_model: Any
    judge_model: Any
    turns: int
    status: str
    report: Any
    created_at: float


@dataclass(frozen=True, slots=True)
class EvaluationListing:
    """An evaluation as an index lists it, with its number of cases."""

    id: int
    run_id: int | None
    label: str
    status: str
    turns: int
    created_at: float
    cases: int


@dataclass(frozen=True, slots=True)
class CaseRecord:
    id: int
    evaluation_id: int
    case_index: int
    profile: str
    personality: str
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class CaseListing:
    """A case as a page lists it: its turns so far and their mean score."""

    id: int
    case_index: int
    profile: str
    personality: str
    status: str
    error: str | None
    turns: int
    mean_score: float | None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: int
    case_id: int
    turn: int
    user_message: str
    reply: str
    score: int | None
    judge_error: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class JudgedTurn:
    """A stored turn with its case's persona: what a second judge scores again."""

    case_id: int
    case_index: int
    profile: str
    personality: str
    turn: int
    user_message: str
    reply: str


def _evaluation(row: sqlite3.Row) -> EvaluationRecord:
    return row_as(EvaluationRecord, row, model=loads(row["model"]), user_model=loads(row["user_model"]),
                  judge_model=loads(row["judge_model"]), report=loads(row["report"]))


class Evaluations:
    """Every statement on ``evaluations``, ``eval_cases`` and ``eval_turns``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- evaluations -----------------------------------------------------------
    def get(self, evaluation_id: int) -> EvaluationRecord | None:
        row = self.conn.execute(f"SELECT {_EVAL_COLS} FROM evaluations WHERE id = ?", (evaluation_id,)).fetchone()
        return None if row is None else _evaluation(row)

    def of_run(self, run_id: int) -> list[int]:
        """The ids of a run's evaluations, oldest first."""
        return [r[0] for r in self.conn.execute("SELECT id FROM evaluations WHERE run_id = ? ORDER BY id", (run_id,))]

    def ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM evaluations ORDER BY id")]

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def page(self, *, limit: int, offset: int = 0) -> list[EvaluationListing]:
        rows = self.conn.execute(
            "SELECT e.id, e.run_id, e.label, e.status, e.turns, e.created_at,"
            " (SELECT COUNT(*) FROM eval_cases c WHERE c.evaluation_id = e.id) AS cases"
            " FROM evaluations e ORDER BY e.id LIMIT ? OFFSET ?", (limit, offset))
        return [row_as(EvaluationListing, r) for r in rows]

    def create(self, run_id: int, label: str, model: Any, user_model: Any, judge_model: Any, turns: int,
               cases: Sequence[tuple[int, str, str]]) -> int:
        """An evaluation with its pending ``(case index, profile, personality)`` cases."""
        eval_id = self.conn.execute(
            "INSERT INTO evaluations (run_id, label, model, user_model, judge_model, turns, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            (run_id, label, json.dumps(model), json.dumps(user_model), json.dumps(judge_model), turns,
             time.time())).lastrowid
        self.conn.executemany(
            "INSERT INTO eval_cases (evaluation_id, case_index, profile, personality, status)"
            " VALUES (?, ?, ?, ?, 'pending')", [(eval_id, *c) for c in cases])
        return int(eval_id)

    def set_status(self, evaluation_id: int, status: str) -> None:
        self.conn.execute("UPDATE evaluations SET status = ? WHERE id = ?", (status, evaluation_id))

    def set_report(self, evaluation_id: int, report: Any) -> None:
        self.conn.execute("UPDATE evaluations SET report = ? WHERE id = ?",
                          (json.dumps(report, ensure_ascii=False), evaluation_id))

    # -- cases -----------------------------------------------------------------
    def cases(self, evaluation_id: int) -> list[CaseRecord]:
        """An evaluation's cases by case index."""
        return [row_as(CaseRecord, r) for r in self.conn.execute(
            "SELECT id, evaluation_id, case_index, profile, personality, status, error FROM eval_cases"
            " WHERE evaluation_id = ? ORDER BY case_index", (evaluation_id,))]

    def case(self, case_id: int) -> tuple[CaseRecord, str] | None:
        """A case and its evaluation's label."""
        row = self.conn.execute(
            "SELECT c.id, c.evaluation_id, c.case_index, c.profile, c.personality, c.status, c.error, e.label"
            " FROM eval_cases c JOIN evaluations e ON e.id = c.evaluation_id WHERE c.id = ?", (case_id,)).fetchone()
        return None if row is None else (row_as(CaseRecord, row), row["label"])

    def case_page(self, evaluation_id: int, *, limit: int, offset: int = 0) -> list[CaseListing]:
        rows = self.conn.execute(
            "SELECT c.id, c.case_index, c.profile, c.personality, c.status, c.error,"
            " (SELECT COUNT(*) FROM eval_turns t WHERE t.case_id = c.id) AS turns,"
            " (SELECT AVG(t.score) FROM eval_turns t WHERE t.case_id = c.id) AS mean_score"
            " FROM eval_cases c WHERE c.evaluation_id = ? ORDER BY c.case_index LIMIT ? OFFSET ?",
            (evaluation_id, limit, offset))
        return [row_as(CaseListing, r) for r in rows]

    def case_status_counts(self, evaluation_id: int) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.conn.execute(
            "SELECT status, COUNT(*) FROM eval_cases WHERE evaluation_id = ? GROUP BY status", (evaluation_id,))}

    def reopen_case(self, case_id: int) -> None:
        self.conn.execute("UPDATE eval_cases SET status = 'pending', error = NULL WHERE id = ?", (case_id,))

    def fail_case(self, case_id: int, error: str) -> None:
        self.conn.execute("UPDATE eval_cases SET status = 'failed', error = ? WHERE id = ?", (error, case_id))

    def complete_case(self, case_id: int) -> None:
        self.conn.execute("UPDATE eval_cases SET status = 'complete', error = NULL WHERE id = ?", (case_id,))

    # -- turns -----------------------------------------------------------------
    def turns(self, case_id: int) -> list[TurnRecord]:
        """A case's stored turns, in order."""
        return [row_as(TurnRecord, r) for r in self.conn.execute(
            "SELECT id, case_id, turn, user_message, reply, score, judge_error, created_at FROM eval_turns"
            " WHERE case_id = ? ORDER BY turn", (case_id,))]

    def add_turn(self, case_id: int, turn: int, user_message: str, reply: str, score: int | None,
                 judge_error: str | None) -> None:
        self.conn.execute(
            "INSERT INTO eval_turns (case_id, turn, user_message, reply, score, judge_error, created_at)"
            " VALUES (?,?,?,?,?,?,?)", (case_id, turn, user_message, reply, score, judge_error, time.time()))

    def set_distribution(self, case_id: int, turn: int, distribution: Sequence[float], expected: float,
                         mass: float | None) -> None:
        """A stored turn's judge distribution over 1-5, its expected score and the mass it had on 1-5."""
        self.conn.execute(
            "UPDATE eval_turns SET score_dist = ?, score_expected = ?, score_mass = ? WHERE case_id = ? AND turn = ?",
            (json.dumps(list(distribution)), expected, mass, case_id, turn))

    def distributions(self, evaluation_id: int) -> dict[tuple[int, int], tuple[float, list[float], float | None]]:
        """{(case index, turn): (expected score, [P(1)..P(5)], mass)} of the turns whose judge returned one."""
        rows = self.conn.execute(
            "SELECT c.case_index, t.turn, t.score_expected, t.score_dist, t.score_mass FROM eval_turns t"
            " JOIN eval_cases c ON c.id = t.case_id WHERE c.evaluation_id = ? AND t.score_expected IS NOT NULL",
            (evaluation_id,))
        return {(int(r[0]), int(r[1])): (float(r[2]), json.loads(r[3]), r[4]) for r in rows}

    def scores(self, evaluation_id: int) -> list[tuple[int, int, int | None, str | None]]:
        """Every stored turn's (case index, turn, score, judge error), by case and turn."""
        return [(r[0], r[1], r[2], r[3]) for r in self.conn.execute(
            "SELECT c.case_index, t.turn, t.score, t.judge_error FROM eval_turns t"
            " JOIN eval_cases c ON c.id = t.case_id WHERE c.evaluation_id = ? ORDER BY c.case_index, t.turn",
            (evaluation_id,))]

    def judged_turns(self, evaluation_id: int) -> list[JudgedTurn]:
        return [row_as(JudgedTurn, r) for r in self.conn.execute(
            "SELECT c.id AS case_id, c.case_index, c.profile, c.personality, t.turn, t.user_message, t.reply"
            " FROM eval_turns t JOIN eval_cases c ON c.id = t.case_id WHERE c.evaluation_id = ?"
            " ORDER BY c.case_index, t.turn", (evaluation_id,))]

    def judge_failures(self, evaluation_id: int) -> int:
        """Stored turns the judge could not score."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM eval_turns t JOIN eval_cases c ON c.id = t.case_id"
            " WHERE c.evaluation_id = ? AND t.score IS NULL", (evaluation_id,)).fetchone()[0]

    def al_points(self, evaluation_ids: Sequence[int]) -> dict[int, list[tuple[int, float | None, int]]]:
        """AL(k) of several evaluations in one query: ``{evaluation id: [(k, mean score, scored cases)]}``."""
        out: dict[int, list[tuple[int, float | None, int]]] = {i: [] for i in evaluation_ids}
        if not evaluation_ids:
            return out
        q = ",".join("?" * len(evaluation_ids))
        for ev, k, al, n in self.conn.execute(
                f"SELECT c.evaluation_id, t.turn, AVG(t.score), COUNT(t.score) FROM eval_turns t"
                f" JOIN eval_cases c ON c.id = t.case_id WHERE c.evaluation_id IN ({q})"
                " GROUP BY c.evaluation_id, t.turn ORDER BY c.evaluation_id, t.turn", list(evaluation_ids)):
            out[ev].append((k, al, n))
        return out
