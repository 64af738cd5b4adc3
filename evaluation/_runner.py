"""The ALOE benchmark run (paper section 3).

For each case the role-play user (who sees the full persona) talks with the
evaluated model (which sees only the conversation) for K turns; after each
reply the judge (full persona, the user's message, the reply) scores 1-5.
Cases run concurrently in one task group, bounded by a CapacityLimiter.

Every turn is one row of ``eval_turns`` written as soon as it is judged. A
judge that fails after its retries leaves ``score`` NULL and the reason in
``judge_error``; the turn is kept and the conversation goes on. A failure of
the user or of the evaluated model ends that case (status 'failed', error
kept); the other cases go on.

Resume: an evaluation is identified by the hash of what defines it (cases,
turns, models, sampling, seed). Running the same benchmark again finds the
stored evaluation and continues every unfinished case from its last stored
turn.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import structlog

from ..agents import AlignmentJudgeRole, Rating, UserRole
from ..agents.gateway import CallContext, ChatModel, Sampling
from ..core.errors import ConfigError, LLMError
from ..environment import Persona
from ..environment.store import CaseRecord, Evaluations, LeaseSettings, Store, open_run
from ._cases import Case, fingerprint

__all__ = ["EVALUATED_ROLE", "BenchmarkSpec", "CasesRunner", "RunOutcome", "run_benchmark", "run_cases"]

log = structlog.get_logger(__name__)

EVALUATED_ROLE = "evaluated"   # role name of the evaluated model's calls in llm_calls


@dataclass(frozen=True)
class BenchmarkSpec:
    """What defines one evaluation. ``model``, ``user_model`` and
    ``judge_model`` are JSON-able identities (never keys); ``config`` is the
    resolved config stored with the run (secrets never included)."""

    label: str
    turns: int = 10
    concurrency: int = 16
    seed: int = 0
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=256))
    model: dict[str, Any] = field(default_factory=dict)
    user_model: dict[str, Any] = field(default_factory=dict)
    judge_model: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not isinstance(self.turns, int) or self.turns < 1:
            raise ConfigError("benchmark.turns", self.turns, "an integer >= 1")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError("evaluation.concurrency", self.concurrency, "an integer >= 1")
        if not self.label:
            raise ConfigError("evaluation.label", self.label, "a non-empty name")

    def identity(self, cases: Sequence[Case]) -> str:
        """Hash of everything that makes two runs the same evaluation."""
        ident = {
            "label": self.label, "turns": self.turns, "seed": self.seed, "cases": fingerprint(list(cases)),
            "n": len(cases), "sampling": self.sampling.as_params(), "model": self.model,
            "user": self.user_model, "judge": self.judge_model,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class RunOutcome:
    """What a run did: its evaluation, and counts of this invocation."""

    evaluation_id: int
    run_id: int
    resumed: bool
    cases: int = 0
    complete: int = 0
    failed: int = 0
    turns_run: int = 0
    judge_failures: int = 0
    seconds: float = 0.0       # this invocation
    wall_s: float = 0.0        # the run's wall time, over every invocation


# runs an evaluation's unfinished cases elsewhere (worker processes): (rows, evaluation id, run id, outcome:
# its turns_run and judge_failures are added to)
CasesRunner = Callable[[list[CaseRecord], int, int, RunOutcome], Awaitable[None]]


def _seed(base: int, case: int, turn: int, which: int) -> int:
    """A distinct, reproducible sampling seed per (case, turn, role)."""
    return (base * 1_000_003 + case * 1009 + turn * 17 + which) % (2**31 - 1)


def _evaluation_of(conn: sqlite3.Connection, run_id: int, spec: BenchmarkSpec, cases: Sequence[Case]) -> int:
    """The run's evaluation, or a new one with all its cases (a write function)."""
    repo = Evaluations(conn)
    existing = repo.of_run(run_id)
    if existing:
        return existing[-1]
    return repo.create(run_id, spec.label, spec.model, spec.user_model, spec.judge_model, spec.turns,
                       [(c.index, c.profile, c.personality) for c in cases])


async def run_benchmark(
    store: Store,
    cases: Sequence[Case],
    *,
    user: UserRole,
    judge: AlignmentJudgeRole,
    model: ChatModel,
    spec: BenchmarkSpec,
    on_turn: Callable[[int, int, int | None], Awaitable[None] | None] | None = None,
    lease: LeaseSettings | None = None,
    alongside: Callable[[int, int], Awaitable[None]] | None = None,
    cases_runner: CasesRunner | None = None,
) -> RunOutcome:
    """Run (or continue) the benchmark over ``cases``; return the outcome.

    The run (kind 'evaluate', identified by ``spec.identity(cases)``) is held
    with ``open_run``: a second process on the same evaluation is refused,
    and a cancelled run is marked interrupted. ``on_turn(case_index, turn,
    score)`` is called after each stored turn (progress display).
    ``alongside(evaluation_id, run_id)`` runs beside the cases, in the same
    task group, once the evaluation is open (the judge check). ``cases_runner``
    runs the unfinished cases instead of this process (``evaluation.workers``)."""
    spec.validate()
    if not cases:
        raise ConfigError("benchmark.cases", 0, "at least one case")
    started = time.monotonic()
    async with open_run(store, "evaluate", spec.config, spec.identity(cases),
                        lease=lease or LeaseSettings()) as run:
        run_id = run.id
        eval_id = await store.write(lambda c: _evaluation_of(c, run_id, spec, cases))
        rows = await store.read(lambda c: Evaluations(c).cases(eval_id))
        todo = [r for r in rows if r.status != "complete"]
        out = RunOutcome(evaluation_id=eval_id, run_id=run_id, resumed=run.resumed, cases=len(rows))
        log.info("evaluate.start", evaluation_id=eval_id, run_id=run_id, resumed=run.resumed, cases=len(rows),
                 unfinished=len(todo), turns=spec.turns, model=spec.label)
        async with anyio.create_task_group() as tg:
            if alongside is not None:
                tg.start_soon(alongside, eval_id, run_id)
            if cases_runner is not None:
                await cases_runner(todo, eval_id, run_id, out)
            else:
                await run_cases(store, todo, user=user, judge=judge, model=model, spec=spec, run_id=run_id,
                                out=out, on_turn=on_turn)

        counts = await store.read(lambda c: Evaluations(c).case_status_counts(eval_id))
        out.complete, out.failed = counts.get("complete", 0), counts.get("failed", 0)
        status = "complete" if out.complete == len(rows) else "failed" if counts.get("pending", 0) == 0 else "running"
        out.seconds = time.monotonic() - started
        out.wall_s = run.wall_s
        # also after a lost queued write (then open_run marks the run failed, naming it)
        await store.write(lambda c: Evaluations(c).set_status(eval_id, status), despite_failure=True)
        run.finish("complete" if status == "complete" else "failed", {k: v for k, v in vars(out).items()})
    log.info("evaluate.done", evaluation_id=eval_id, status=status, complete=out.complete, failed=out.failed,
             turns_run=out.turns_run, judge_failures=out.judge_failures, seconds=round(out.seconds, 1))
    return out


async def run_cases(store: Store, rows: Sequence[CaseRecord], *, user: UserRole, judge: AlignmentJudgeRole,
                    model: ChatModel, spec: BenchmarkSpec, run_id: int, out: RunOutcome,
                    on_turn: Callable[[int, int, int | None], Awaitable[None] | None] | None = None) -> None:
    """Run (or continue) the cases ``rows`` of run ``run_id``'s evaluation, ``spec.concurrency`` at once;
    counts go to ``out``."""
    limiter = anyio.CapacityLimiter(spec.concurrency)

    async def one(row: CaseRecord) -> None:
        async with limiter:
            with structlog.contextvars.bound_contextvars(evaluation_id=row.evaluation_id, case=row.case_index):
                await _run_case(store, row, user=user, judge=judge, model=model, spec=spec, run_id=run_id,
                                out=out, on_turn=on_turn)

    async with anyio.create_task_group() as tg:
        for row in rows:
            tg.start_soon(one, row)


async def _run_case(store: Store, row: CaseRecord, *, user: UserRole, judge: AlignmentJudgeRole, model: ChatModel,
                    spec: BenchmarkSpec, run_id: int, out: RunOutcome,
                    on_turn: Callable[[int, int, int | None], Awaitable[None] | None] | None) -> None:
    case_id, index = row.id, row.case_index
    persona = Persona(id=index, profile=row.profile, personality=row.personality, split="eval")
    done = await store.read(lambda c: Evaluations(c).turns(case_id))
    # the evaluated model's view: the user's messages and its own replies, nothing else
    conversation: list[dict[str, str]] = []
    for t in done:
        conversation += [{"role": "user", "content": t.user_message}, {"role": "assistant", "content": t.reply}]
    if row.status != "pending":
        await store.write(lambda c: Evaluations(c).reopen_case(case_id))
    judged = 0
    for turn in range(len(done) + 1, spec.turns + 1):
        ctx = CallContext(run_id=run_id, turn=turn, case_id=case_id)
        try:
            message = await user(persona, conversation, seed=_seed(spec.seed, index, turn, 1), context=ctx)
            sampling = replace(spec.sampling, seed=_seed(spec.seed, index, turn, 2))
            result = await model.chat([*conversation, {"role": "user", "content": message}], role=EVALUATED_ROLE,
                                      sampling=sampling, context=ctx)
        except LLMError as exc:
            err = f"turn {turn}: {exc}"
            await store.write(lambda c, err=err: Evaluations(c).fail_case(case_id, err))
            log.warning("evaluate.case_failed", turn=turn, error=str(exc))
            out.failed += 1
            return
        reply = result.text.strip()
        score: int | None = None
        judge_error: str | None = None
        rating = Rating(0)
        try:
            rating = await judge.rate(persona, message, reply, seed=_seed(spec.seed, index, turn, 3), context=ctx)
            score = int(rating.score)
            if not 1 <= score <= 5:
                judge_error, score, rating = f"score {score} outside 1-5", None, Rating(0)
        except LLMError as exc:
            judge_error = str(exc)
        if score is None:
            out.judge_failures += 1
            log.warning("evaluate.judge_failed", turn=turn, error=judge_error)

        def store_turn(c: sqlite3.Connection, t=(turn, message, reply, score, judge_error), rating=rating) -> None:
            repo = Evaluations(c)
            repo.add_turn(case_id, *t)
            if rating.expected is not None:
                repo.set_distribution(case_id, t[0], rating.distribution, rating.expected, rating.mass)

        await store.write(store_turn)
        out.turns_run += 1
        judged += 1
        conversation += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        if on_turn is not None:
            maybe = on_turn(index, turn, score)
            if maybe is not None:
                await maybe
    await store.write(lambda c: Evaluations(c).complete_case(case_id))
    log.info("evaluate.case_done", turns=spec.turns, judged_now=judged)
