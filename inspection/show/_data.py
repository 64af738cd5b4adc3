"""Read-only views of what a database holds: a tree with its nodes and LLM
calls, a run summary, an evaluation with its AL(k) curve and cases.

Both ``aloe show`` (terminal, export) and ``aloe view`` (web) read through
these functions. Every query is parameterized and bounded: lists take a
``limit`` and an ``offset`` (or a keyset ``after``), so nothing loads a whole
10,000-tree database.
"""

from __future__ import annotations

import difflib
import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Literal

from aloesim.environment.store import (
    CallRow,
    Calls,
    EvaluationListing,
    Evaluations,
    EventRecord,
    RunCost,
    RunRecord,
    Runs,
    Trees,
    dollars_text,
    shown_status,
)

Change = Literal["same", "added", "removed"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of text and whether it is new, gone or unchanged since the
    previous turn's inferred persona."""

    kind: Change
    text: str


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
class NodeView:
    """One turn of a tree, with the calls that produced it and what changed in
    the inferred persona since its parent."""

    id: int
    parent_id: int | None
    turn: int
    branch: str
    user_message: str
    inferred_profile: str | None
    inferred_personalities: str | None
    preferred: str
    rejected: str
    continued: str
    judge: Any
    created_at: float
    calls: list[CallView] = field(default_factory=list)
    profile_diff: list[Segment] = field(default_factory=list)
    personalities_diff: list[Segment] = field(default_factory=list)
    children: list[int] = field(default_factory=list)

    @property
    def persona_changed(self) -> bool:
        return any(s.kind != "same" for s in self.profile_diff + self.personalities_diff)

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s or 0.0 for c in self.calls)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls)

    def as_dict(self, *, calls: bool = True) -> dict[str, Any]:
        d = {
            "id": self.id,
            "parent_id": self.parent_id,
            "turn": self.turn,
            "branch": self.branch,
            "user_message": self.user_message,
            "inferred": {"profile": self.inferred_profile, "personalities": self.inferred_personalities},
            "inferred_changed": self.persona_changed,
            "preferred": self.preferred,
            "rejected": self.rejected,
            "continued": self.continued,
            "judge": self.judge,
            "created_at": self.created_at,
        }
        if calls:
            d["calls"] = [c.as_dict() for c in self.calls]
        return d


@dataclass(slots=True)
class TreeView:
    """A preference tree: its persona, status and nodes ordered by (turn, branch)."""

    id: int
    run_id: int
    persona_id: int
    profile: str
    personality: str
    split: str
    mode: str
    turns: int
    seed: int
    status: str
    error: str | None
    created_at: float
    finished_at: float | None
    nodes: list[NodeView]
    stray_calls: list[CallView]  # calls whose (turn, branch) has no committed node
    events: int

    def node(self, node_id: int) -> NodeView:
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def roots(self) -> list[NodeView]:
        ids = {n.id for n in self.nodes}
        return [n for n in self.nodes if n.parent_id not in ids]

    @property
    def continued_path(self) -> list[NodeView]:
        """The conversation that went furthest: from the root, follow children
        (the preferred one first when both continued)."""
        return self.path_to("")

    def path_to(self, branch: str) -> list[NodeView]:
        """The root-to-leaf conversation through the node at ``branch``: the
        nodes whose branch is a prefix of it, then on past it (preferred child
        first). Empty when the tree has no node at ``branch``."""
        roots = self.roots
        if not roots or not any(n.branch == branch for n in self.nodes):
            return []
        by_id = {n.id: n for n in self.nodes}
        path = [roots[0]]
        while path[-1].children:
            kids = sorted((by_id[c] for c in path[-1].children), key=lambda n: n.branch)
            toward = [k for k in kids if branch.startswith(k.branch)]
            path.append(toward[0] if toward else kids[0])
        return path

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "kind": "tree",
            "id": self.id,
            "run_id": self.run_id,
            "persona": {
                "id": self.persona_id,
                "profile": self.profile,
                "personality": self.personality,
                "split": self.split,
            },
            "mode": self.mode,
            "turns": self.turns,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "nodes": [n.as_dict() for n in self.nodes],
            "stray_calls": [c.as_dict() for c in self.stray_calls],
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


@dataclass(slots=True)
class TreeRow:
    id: int
    persona_id: int
    profile: str
    personality: str
    mode: str
    turns: int
    status: str
    error: str | None
    nodes: int


@dataclass(slots=True)
class Point:
    k: int
    al: float | None
    n: int


@dataclass(slots=True)
class CaseRow:
    id: int
    case_index: int
    profile: str
    personality: str
    status: str
    error: str | None
    turns: int
    mean_score: float | None


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
        """(IR, R²): least-squares slope of AL(k) over k and its fit (paper eq. 3)."""
        return fit_line([(p.k, p.al) for p in self.curve if p.al is not None])

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


# ---------------------------------------------------------------- helpers
def _slots(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return json.dumps(value, ensure_ascii=False)


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def diff_words(old: str | None, new: str | None) -> list[Segment]:
    """Word-level difference of two texts: what ``new`` kept, added and dropped."""
    a, b = _TOKEN.findall(old or ""), _TOKEN.findall(new or "")
    out: list[Segment] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(Segment("same", "".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            out.append(Segment("removed", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(Segment("added", "".join(b[j1:j2])))
    merged: list[Segment] = []
    for seg in out:
        if not seg.text:
            continue
        if merged and merged[-1].kind == seg.kind:
            merged[-1] = Segment(seg.kind, merged[-1].text + seg.text)
        else:
            merged.append(seg)
    return merged


def fit_line(points: list[tuple[int, float | None]]) -> tuple[float | None, float | None]:
    """Least-squares slope b of y = b·k + a and the R² of the fit (None when
    undefined), as in aloesim.evaluation.metrics.fit_line."""
    pts = [(float(k), float(y)) for k, y in points if y is not None]
    if len(pts) < 2:
        return None, None
    n = len(pts)
    mx = sum(k for k, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((k - mx) ** 2 for k, _ in pts)
    if sxx == 0:
        return None, None
    b = sum((k - mx) * (y - my) for k, y in pts) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for _, y in pts)
    ss_res = sum((y - (b * k + a)) ** 2 for k, y in pts)
    r2 = None if ss_tot == 0 else 1.0 - ss_res / ss_tot  # constant AL: R² undefined
    return b, r2


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: {}}
    return {prefix or "(config)": value}


def config_diff(base: Any, other: Any) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose value differs between two configs: (key, base value,
    other value). A key missing on one side and null on the other is no difference."""
    fa, fb = flatten(base), flatten(other)
    out = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        if va != vb:
            out.append((key, va, vb))
    return out


def first_of_kind(conn: sqlite3.Connection, kind: str) -> RunRecord | None:
    """The oldest run of ``kind``: what the viewer compares a run's config with."""
    runs = Runs(conn).all(kind)
    return runs[0] if runs else None


def _call(row: CallRow) -> CallView:
    return CallView(
        id=row.id, role=row.role, model=row.model, endpoint=row.endpoint, turn=row.turn, branch=row.branch,
        case_id=row.case_id, request=row.request, response=row.response, prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens, latency_s=row.latency_s, attempts=row.attempts,
        cached=row.cached, error=row.error, created_at=row.created_at,
    )


# ---------------------------------------------------------------- trees
def load_tree(conn: sqlite3.Connection, tree_id: int) -> TreeView | None:
    """A whole tree (one tree is small: turns x branches nodes and their calls)."""
    repo = Trees(conn)
    found = repo.get(tree_id)
    if found is None:
        return None
    t, persona = found
    nodes = [
        NodeView(
            id=r.id, parent_id=r.parent_id, turn=r.turn, branch=r.branch, user_message=r.user_message,
            inferred_profile=r.inferred_profile, inferred_personalities=r.inferred_personalities,
            preferred=r.preferred, rejected=r.rejected, continued=r.continued, judge=r.judge, created_at=r.created_at,
        )
        for r in repo.node_records(tree_id)
    ]
    by_id = {n.id: n for n in nodes}
    by_branch = {n.branch: n for n in nodes}
    for n in nodes:
        parent = (
            by_id.get(n.parent_id)
            if n.parent_id is not None
            else by_branch.get(n.branch[:-1])
            if n.branch
            else None
        )
        if parent is not None:
            n.parent_id = parent.id
            parent.children.append(n.id)
        n.profile_diff = diff_words(parent.inferred_profile if parent else None, n.inferred_profile)
        n.personalities_diff = diff_words(
            parent.inferred_personalities if parent else None, n.inferred_personalities
        )
    by_key = {(n.turn, n.branch): n for n in nodes}
    stray: list[CallView] = []
    for r in Calls(conn).of_tree(tree_id):
        call = _call(r)
        node = by_key.get((call.turn, call.branch or ""))
        (node.calls if node is not None else stray).append(call)
    return TreeView(
        id=t.id,
        run_id=t.run_id,
        persona_id=t.persona_id,
        profile=persona.profile,
        personality=persona.personality,
        split=persona.split,
        mode=t.mode,
        turns=t.turns,
        seed=t.seed,
        status=t.status,
        error=t.error,
        created_at=t.created_at,
        finished_at=t.finished_at,
        nodes=nodes,
        stray_calls=stray,
        events=repo.event_count(tree_id),
    )


def tree_events(conn: sqlite3.Connection, tree_id: int, limit: int = 200) -> list[EventRecord]:
    """The first ``limit`` bus events recorded for a tree."""
    return Trees(conn).events(tree_id, limit)


def count_trees(conn: sqlite3.Connection, run_id: int, *, q: str = "", status: str = "") -> int:
    """How many of a run's trees match the persona text ``q`` and ``status``."""
    return Trees(conn).count_page(run_id, q=q, status=status)


def list_trees(
    conn: sqlite3.Connection, run_id: int, *, q: str = "", status: str = "", limit: int = 50, offset: int = 0
) -> list[TreeRow]:
    """One page of a run's trees (by id), optionally filtered by persona text
    (a LIKE search in profile and personality) and status."""
    repo = Trees(conn)
    rows = repo.page(run_id, q=q, status=status, limit=limit, offset=offset)
    counts = repo.nodes_per_tree([r.id for r in rows])
    return [
        TreeRow(
            id=r.id,
            persona_id=r.persona_id,
            profile=r.profile,
            personality=r.personality,
            mode=r.mode,
            turns=r.turns,
            status=r.status,
            error=r.error,
            nodes=counts.get(r.id, 0),
        )
        for r in rows
    ]


# ---------------------------------------------------------------- runs
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


# ---------------------------------------------------------------- evaluations
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
) -> list[CaseRow]:
    """One page of an evaluation's cases (by case index) with their mean score."""
    return [CaseRow(id=r.id, case_index=r.case_index, profile=r.profile, personality=r.personality, status=r.status,
                    error=r.error, turns=r.turns, mean_score=r.mean_score)
            for r in Evaluations(conn).case_page(evaluation_id, limit=limit, offset=offset)]


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
        call = _call(r)
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
