"""Views of LLM calls: one call (what a role was sent, what came back) and a
run's calls in totals per role, read through the store's ``Calls`` repository."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from aloesim.environment.store import CallRow, Calls, RunCost, dollars_text

from ._text import _slots, _text

__all__ = ["CallStats", "CallView", "RoleStats", "call_view", "run_call_stats", "run_calls_version"]

@dataclass(slots=True)
class CallView:
    """One row of ``llm_calls``: what a role was sent and what came back."""

    id: int
    role: str
    model: str
    endpoint: str
    turn: int | None
    branch: str | None
    case_id: int | None
    request: Any  # parsed JSON when it parses, else the raw text
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    attempts: int
    cached: bool
    error: str | None
    created_at: float

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages of the request (empty when it has none)."""
        req = self.request
        msgs = req.get("messages") if isinstance(req, dict) else req if isinstance(req, list) else None
        if not isinstance(msgs, list):
            return []
        out = []
        for m in msgs:
            if isinstance(m, dict):
                out.append({"role": str(m.get("role", "?")), "content": _text(m.get("content"))})
        return out

    @property
    def params(self) -> dict[str, Any]:
        """Everything in the request except its messages (sampling, schema, ...)."""
        if isinstance(self.request, dict):
            return {k: v for k, v in self.request.items() if k != "messages"}
        return {}

    @property
    def tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "model": self.model,
            "endpoint": self.endpoint,
            "turn": self.turn,
            "branch": self.branch,
            "case_id": self.case_id,
            "request": self.request,
            "response": self.response,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
            "cached": self.cached,
            "error": self.error,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class RoleStats:
    role: str
    calls: int
    errors: int
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    mean_latency_s: float | None
    max_latency_s: float | None
    cost_usd: float | None = None  # the known prices' sum (None: none known)
    unpriced: int = 0  # calls whose price is unknown

    @property
    def dollars(self) -> str:
        return dollars_text(self.cost_usd, self.unpriced)


@dataclass(slots=True)
class CallStats:
    """A run's LLM calls in totals: per role, and the first failed calls."""

    run_id: int
    roles: list[RoleStats]
    errors: list[tuple[int, str, str, int | None]]  # (call id, role, error, tree id) samples
    cost: RunCost | None = None  # dollars in total, per role and per model

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.roles)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.roles)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.roles)

    @property
    def error_count(self) -> int:
        return sum(r.errors for r in self.roles)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "roles": [_slots(r) for r in self.roles],
            "call_errors": [{"id": i, "role": r, "error": e, "tree_id": t} for i, r, e, t in self.errors],
            "call_error_count": self.error_count,
            **(self.cost.as_dict() if self.cost is not None else {}),
        }


def call_view(row: CallRow) -> CallView:
    return CallView(
        id=row.id, role=row.role, model=row.model, endpoint=row.endpoint, turn=row.turn, branch=row.branch,
        case_id=row.case_id, request=row.request, response=row.response, prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens, latency_s=row.latency_s, attempts=row.attempts,
        cached=row.cached, error=row.error, created_at=row.created_at,
    )


def run_call_stats(conn: sqlite3.Connection, run_id: int, *, samples: int = 10) -> CallStats:
    """Per-role call counts, errors, attempts, tokens and latency of a run, and
    its first failed calls. Reads every call of the run (one pass over the
    run's index range): the costliest summary, so the viewer caches it."""
    calls = Calls(conn)
    roles = [
        RoleStats(
            role=x.role,
            calls=x.calls,
            errors=x.errors,
            attempts=x.attempts,
            prompt_tokens=x.prompt_tokens,
            completion_tokens=x.completion_tokens,
            mean_latency_s=x.mean_latency_s,
            max_latency_s=x.max_latency_s,
            cost_usd=x.cost_usd,
            unpriced=x.unpriced,
        )
        for x in calls.by_role(run_id)
    ]
    errors = calls.errors(run_id, samples) if any(r.errors for r in roles) else []
    return CallStats(run_id=run_id, roles=roles, errors=errors, cost=calls.cost(run_id))


def run_calls_version(conn: sqlite3.Connection, run_id: int) -> int | None:
    """The newest call id of a run (an index lookup): changes whenever a call is recorded."""
    return Calls(conn).newest_id(run_id)
