"""Views of evaluations and benchmark cases: AL(k) per turn with the
summary metrics of ``aloesim.evaluation.metrics`` (average, IR, R²), pages
of cases, and one case's transcript with its calls, read through the
store's ``Evaluations`` and ``Calls`` repositories."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from aloesim.environment.store import Calls, CaseListing, EvaluationListing, Evaluations
from aloesim.evaluation import metrics

from ._calls import CallView, call_view

__all__ = ["CaseView", "EvaluationView", "Point", "TurnView", "al_curves", "list_cases", "list_evaluations",
           "load_case", "load_evaluation"]

@dataclass(slots=True)
class Point:
    """AL(k) at one turn k and how many cases were scored there (``al`` None: none)."""

    k: int
    al: float | None
    n: int


@dataclass(slots=True)
class EvaluationView:
    """An evaluation: identity, AL(k) per turn, improvement rate, case counts."""

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
    curve: list[Point]
    cases_by_status: dict[str, int]
    judge_failures: int

    @property
    def cases(self) -> int:
        return sum(self.cases_by_status.values())

    @property
    def improvement(self) -> tuple[float | None, float | None]:
        """(IR, R²): least-squares slope of AL(k) over k and its fit (paper eq. 3),
        by ``aloesim.evaluation.metrics.fit_line``."""
        scored = [p for p in self.curve if p.al is not None]
        ir, _, r2 = metrics.fit_line([p.al for p in scored], [p.k for p in scored])
        return ir, r2

    @property
    def average(self) -> float | None:
        vals = [p.al for p in self.curve if p.al is not None]
        return sum(vals) / len(vals) if vals else None

    def as_dict(self) -> dict[str, Any]:
        ir, r2 = self.improvement
        return {
            "version": 1,
            "kind": "evaluation",
            "id": self.id,
            "run_id": self.run_id,
            "label": self.label,
            "model": self.model,
            "user_model": self.user_model,
            "judge_model": self.judge_model,
            "turns": self.turns,
            "status": self.status,
            "report": self.report,
            "created_at": self.created_at,
            "al": [{"k": p.k, "al": p.al, "n": p.n} for p in self.curve],
            "average": self.average,
            "ir": ir,
            "r2": r2,
            "cases_by_status": self.cases_by_status,
            "judge_failures": self.judge_failures,
        }


@dataclass(slots=True)
class TurnView:
    turn: int
    user_message: str
    reply: str
    score: int | None
    judge_error: str | None
    calls: list[CallView]


@dataclass(slots=True)
class CaseView:
    """One benchmark case: the persona, each turn's message, reply and score."""

    id: int
    evaluation_id: int
    label: str
    case_index: int
    profile: str
    personality: str
    status: str
    error: str | None
    turns: list[TurnView]
    stray_calls: list[CallView]

    @property
    def mean_score(self) -> float | None:
        s = [t.score for t in self.turns if t.score is not None]
        return sum(s) / len(s) if s else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "kind": "case",
            "id": self.id,
            "evaluation_id": self.evaluation_id,
            "label": self.label,
            "case_index": self.case_index,
            "persona": {"profile": self.profile, "personality": self.personality},
            "status": self.status,
            "error": self.error,
            "mean_score": self.mean_score,
            "turns": [
                {
                    "turn": t.turn,
                    "user_message": t.user_message,
                    "reply": t.reply,
                    "score": t.score,
                    "judge_error": t.judge_error,
                    "calls": [c.as_dict() for c in t.calls],
                }
                for t in self.turns
            ],
            "stray_calls": [c.as_dict() for c in self.stray_calls],
        }


def list_evaluations(
    conn: sqlite3.Connection, *, limit: int = 50, offset: int = 0
) -> tuple[list[EvaluationListing], int]:
    """One page of evaluations with their case counts."""
    repo = Evaluations(conn)
    return repo.page(limit=limit, offset=offset), repo.count()


def load_evaluation(conn: sqlite3.Connection, evaluation_id: int) -> EvaluationView | None:
    """An evaluation with AL(k): the mean judge score over cases at each turn k."""
    repo = Evaluations(conn)
    e = repo.get(evaluation_id)
    if e is None:
        return None
    scored = {k: (al, n) for k, al, n in repo.al_points([evaluation_id])[evaluation_id]}
    last = max([e.turns, *scored.keys()]) if scored else e.turns
    curve = [
        Point(k, scored[k][0] if k in scored else None, scored[k][1] if k in scored else 0)
        for k in range(1, last + 1)
    ]
    return EvaluationView(
        id=e.id,
        run_id=e.run_id,
        label=e.label,
        model=e.model,
        user_model=e.user_model,
        judge_model=e.judge_model,
        turns=e.turns,
        status=e.status,
        report=e.report,
        created_at=e.created_at,
        curve=curve,
        cases_by_status=repo.case_status_counts(evaluation_id),
        judge_failures=repo.judge_failures(evaluation_id),
    )


def al_curves(conn: sqlite3.Connection, evaluation_ids: list[int]) -> dict[int, list[Point]]:
    """AL(k) of several evaluations in one query: {evaluation id: points by k}."""
    return {ev: [Point(k, al, n) for k, al, n in points]
            for ev, points in Evaluations(conn).al_points(evaluation_ids).items()}


def list_cases(
    conn: sqlite3.Connection, evaluation_id: int, *, limit: int = 50, offset: int = 0
) -> list[CaseListing]:
    """One page of an evaluation's cases (by case index) with their mean score
    (the store's ``CaseListing`` rows: the view adds nothing to them)."""
    return Evaluations(conn).case_page(evaluation_id, limit=limit, offset=offset)


def load_case(conn: sqlite3.Connection, case_id: int) -> CaseView | None:
    """One benchmark case with its turns and the LLM calls made for it."""
    repo = Evaluations(conn)
    found = repo.case(case_id)
    if found is None:
        return None
    c, label = found
    turns = [
        TurnView(turn=r.turn, user_message=r.user_message, reply=r.reply, score=r.score, judge_error=r.judge_error,
                 calls=[])
        for r in repo.turns(case_id)
    ]
    by_turn = {t.turn: t for t in turns}
    stray: list[CallView] = []
    for r in Calls(conn).of_case(case_id):
        call = call_view(r)
        (by_turn[call.turn].calls if call.turn in by_turn else stray).append(call)
    return CaseView(
        id=c.id,
        evaluation_id=c.evaluation_id,
        label=label,
        case_index=c.case_index,
        profile=c.profile,
        personality=c.personality,
        status=c.status,
        error=c.error,
        turns=turns,
        stray_calls=stray,
    )
