"""Views of runs: a run's summary (counted, never loaded whole) and pages of
runs with their config differences from the first run of the same kind,
read through the store's ``Runs``, ``Trees``, ``Calls`` and ``Evaluations``
repositories."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from aloesim.environment.store import Evaluations, RunRecord, Runs, Trees, shown_status

from ._calls import CallStats, RoleStats, run_call_stats
from ._text import config_diff

__all__ = ["RunRow", "RunView", "first_of_kind", "list_runs", "load_run"]

@dataclass(slots=True)
class RunView:
    """A run and what it produced, counted (never loaded whole)."""

    id: int
    kind: str
    config: Any
    config_hash: str
    status: str
    started_at: float
    finished_at: float | None
    stats: Any
    trees_by_status: dict[str, int]
    nodes: int
    failed_trees: list[tuple[int, str | None]]
    call_stats: CallStats | None  # None when not loaded (the web viewer loads it on its own page)
    evaluations: list[int]
    wall_s: float = 0.0  # the sum of the run's invocations' wall time (see environment.store.open_run)
    invocations: int = 0

    @property
    def trees(self) -> int:
        return sum(self.trees_by_status.values())

    @property
    def calls(self) -> int:
        return self.call_stats.calls if self.call_stats else 0

    @property
    def prompt_tokens(self) -> int:
        return self.call_stats.prompt_tokens if self.call_stats else 0

    @property
    def completion_tokens(self) -> int:
        return self.call_stats.completion_tokens if self.call_stats else 0

    @property
    def roles(self) -> list[RoleStats]:
        return self.call_stats.roles if self.call_stats else []

    @property
    def call_errors(self) -> list[tuple[int, str, str, int | None]]:
        return self.call_stats.errors if self.call_stats else []

    @property
    def call_error_count(self) -> int:
        return self.call_stats.error_count if self.call_stats else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "kind": "run",
            "id": self.id,
            "run_kind": self.kind,
            "config": self.config,
            "config_hash": self.config_hash,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_s": self.wall_s,
            "invocations": self.invocations,
            "stats": self.stats,
            "trees_by_status": self.trees_by_status,
            "nodes": self.nodes,
            "failed_trees": [{"id": i, "error": e} for i, e in self.failed_trees],
            **(self.call_stats.as_dict() if self.call_stats is not None else {}),
            "evaluations": self.evaluations,
        }


@dataclass(slots=True)
class RunRow:
    """A run as listed on the index: counts and how its config differs from the
    first run of the same kind (``base``: that run's id; None for the first)."""

    id: int
    kind: str
    status: str
    started_at: float
    finished_at: float | None
    trees: int
    trees_by_status: dict[str, int]
    diff: list[tuple[str, Any, Any]]  # (dotted key, first run's value, this run's value)
    base: int | None = None


def first_of_kind(conn: sqlite3.Connection, kind: str) -> RunRecord | None:
    """The oldest run of ``kind``: what the viewer compares a run's config with."""
    runs = Runs(conn).all(kind)
    return runs[0] if runs else None


def list_runs(conn: sqlite3.Connection, *, limit: int = 50, offset: int = 0) -> tuple[list[RunRow], int]:
    """One page of runs (by id) with tree counts and config differences vs the
    first run of the same kind."""
    runs = Runs(conn)
    total = runs.count()
    rows = runs.page(limit=limit, offset=offset)
    firsts = {kind: first_of_kind(conn, kind) for kind in {r.kind for r in rows}}
    leases = runs.leases()
    counts = Trees(conn).status_counts([r.id for r in rows])
    return [
        RunRow(
            id=r.id,
            kind=r.kind,
            status=shown_status(r, leases.get(r.id)),
            started_at=r.started_at,
            finished_at=r.finished_at,
            trees=sum(counts[r.id].values()),
            trees_by_status=counts[r.id],
            diff=config_diff(firsts[r.kind].config, r.config) if firsts[r.kind].id != r.id else [],
            base=firsts[r.kind].id if firsts[r.kind].id != r.id else None,
        )
        for r in rows
    ], total


def load_run(
    conn: sqlite3.Connection, run_id: int, *, calls: bool = True, samples: int = 10
) -> RunView | None:
    """A run's summary: config, trees by status, nodes, failures, wall time, and
    (with ``calls``) its LLM calls per role with tokens and errors."""
    runs = Runs(conn)
    r = runs.get(run_id)
    if r is None:
        return None
    trees = Trees(conn)
    return RunView(
        id=r.id,
        kind=r.kind,
        config=r.config,
        config_hash=r.config_hash,
        status=shown_status(r, runs.lease(run_id)),
        started_at=r.started_at,
        finished_at=r.finished_at,
        stats=r.stats,
        trees_by_status=trees.status_counts([run_id])[run_id],
        nodes=trees.node_counts(run_id).get(run_id, 0),
        failed_trees=trees.failed(run_id, samples),
        call_stats=run_call_stats(conn, run_id, samples=samples) if calls else None,
        evaluations=Evaluations(conn).of_run(run_id),
        wall_s=r.wall_s,
        invocations=r.invocations,
    )
