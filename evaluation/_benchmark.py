"""``aloe evaluate`` as one use case: run (or continue) the benchmark of a
checked plan, score it with a second judge if asked, store and write the
report, and return the summary the command prints. The judge validity
check runs beside the cases (``run_judge_check``); the report carries its
verdict and marks every figure of a judge that failed it.

The models come from outside (the command opens its model pool: evaluation
knows roles and endpoints, not how config becomes servers), through the
small ``BenchmarkModels`` protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from ..agents import AlignmentJudge, AlignmentJudgeRole, PreferenceJudgeRole, UserRole
from ..agents.gateway import BackendSettings, ChatModel, Sampling, SpendLimit, SpendStop, StoreRecorder
from ..core import AloeError, the_lone_error
from ..core.errors import BudgetReached
from ..environment.store import Calls, Evaluations, LeaseSettings, Runs, Store
from ._cases import Case
from ._judge_check import run_judge_check
from ._rejudge import rejudge
from ._report import build_report, load_evaluation, write_report
from ._report_checks import summary_fields
from ._runner import BenchmarkSpec, run_benchmark
from ._settings import JudgeCheckSettings

__all__ = ["BenchmarkModels", "EvaluatedModel", "EvaluationPlan", "SecondJudge", "evaluate"]


@dataclass(frozen=True)
class EvaluatedModel:
    """The evaluated model's settings, checked: ``backend`` for an
    OpenAI-compatible endpoint, or the hf fields."""

    kind: str
    sampling: Sampling
    identity: dict[str, Any]
    backend: BackendSettings | None = None
    hf: dict[str, Any] | None = None


@dataclass(frozen=True)
class EvaluationPlan:
    """Everything one ``aloe evaluate`` does, checked before anything is written."""

    cases: list[Case]
    spec: BenchmarkSpec
    model: EvaluatedModel
    out_dir: Path
    n_boot: int
    level: float
    labels: dict[tuple[int, int], int] | None
    second_judge: BackendSettings | None = None
    labels_source: str = "labels"
    scoring: str = "sample"                      # evaluation.judge_scoring
    judge_check: JudgeCheckSettings = field(default_factory=JudgeCheckSettings)


class SecondJudge(AlignmentJudge):
    """The benchmark judge's prompt on another model; its calls are recorded as ``second_judge``."""

    role = "second_judge"


class BenchmarkModels(Protocol):
    """The models of one evaluation: the role-play user, the judge (and the
    pairwise preference judge when the judge check covers it: else None), and
    endpoints for the evaluated model and a second judge. An implementation
    may also have ``spend`` (a ``SpendLimit``: ``budget.usd``) and
    ``cases_runner`` (a ``CasesRunner``: the cases run in worker processes)."""

    user: UserRole
    judge: AlignmentJudgeRole
    preference_judge: PreferenceJudgeRole | None

    async def endpoint(self, settings: BackendSettings, *, name: str | None = None) -> ChatModel: ...

    def judge_on(self, model: ChatModel) -> SecondJudge: ...


async def _evaluated(plan: EvaluationPlan, store: Store, models: BenchmarkModels) -> ChatModel:
    if plan.model.kind == "hf":
        from ..agents.hf import HFChatModel

        hf = plan.model.hf or {}
        model = HFChatModel(hf["path"], gguf_file=hf["gguf_file"], name=hf["name"], device=hf["device"],
                            dtype=hf["dtype"], max_retries=hf["max_retries"], recorder=StoreRecorder(store))
        await model.load()
        return model
    assert plan.model.backend is not None
    return await models.endpoint(plan.model.backend, name=plan.model.identity["name"])


@asynccontextmanager
async def _spending(store: Store, identity: str, limit: SpendLimit | None) -> AsyncIterator[SpendStop]:
    """The body, stopped once ``budget.usd`` is reached, counting what the evaluation's run spent before."""
    if limit is None:
        yield SpendStop()
        return

    def spent(c) -> float:
        run = Runs(c).latest("evaluate", identity)
        return 0.0 if run is None else Calls(c).spent(run.id)

    limit.spent = await store.read(spent)
    async with limit.stop_when_reached() as stop:
        yield stop


async def evaluate(plan: EvaluationPlan, db: str | Path,
                   open_models: Callable[[Store], AbstractAsyncContextManager[BenchmarkModels]], *,
                   lease: LeaseSettings | None = None) -> dict[str, Any]:
    """Run the plan; return the summary (evaluation id, status, AL(k), failures, report files)."""
    async with Store.open(db) as store:
        async with open_models(store) as models:
            evaluated = await _evaluated(plan, store, models)

            async def check(evaluation_id: int, run_id: int) -> None:
                if plan.judge_check.enabled:
                    await run_judge_check(store, evaluation_id, plan.cases, models.judge, settings=plan.judge_check,
                                          seed=plan.spec.seed, run_id=run_id,
                                          preference_judge=models.preference_judge,
                                          concurrency=plan.spec.concurrency)

            identity = plan.spec.identity(plan.cases)
            async with _spending(store, identity, getattr(models, "spend", None)) as spend:
                try:
                    outcome = await run_benchmark(store, plan.cases, user=models.user, judge=models.judge,
                                                  model=evaluated, spec=plan.spec, lease=lease, alongside=check,
                                                  cases_runner=getattr(models, "cases_runner", None))
                except Exception as exc:  # a lost database write, a managed server that died for good
                    lone = the_lone_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
                    if not isinstance(lone, AloeError):
                        raise
                    raise lone.with_hint("the run is marked failed and its finished turns are kept; once the cause"
                                         " is fixed, re-run the same command to continue") from None
                labels, source = plan.labels, plan.labels_source
                if plan.second_judge is not None:
                    judge2 = models.judge_on(await models.endpoint(plan.second_judge))
                    labels = await rejudge(store, outcome.evaluation_id, judge2, concurrency=plan.spec.concurrency,
                                           seed=plan.spec.seed, run_id=outcome.run_id)
                    source = f"second judge {plan.second_judge.kind}:{plan.second_judge.model}"
            if spend.reached:  # the run is marked interrupted (cancelled inside open_run); resumable as is
                run = await store.read(lambda c: Runs(c).latest("evaluate", identity))
                limit = models.spend  # type: ignore[attr-defined]
                raise BudgetReached(run.id if run else 0, "evaluate", limit.spent, limit.usd)
        # the recorder queues call records without waiting (store.submit); a write commits after them (the
        # writer is FIFO), so the report's token table counts every call, the second judge's last ones too
        await store.write(lambda c: None)
        data = await load_evaluation(store, outcome.evaluation_id)
        # the run's totals, over every invocation (as `aloe runs` shows them)
        totals = await store.read(lambda c: Calls(c).totals(outcome.run_id))
        cost = await store.read(lambda c: Calls(c).cost(outcome.run_id))
        report = await anyio.to_thread.run_sync(
            lambda: build_report([data], n_boot=plan.n_boot, seed=plan.spec.seed, level=plan.level, labels=labels,
                                 labels_source=source, scoring=plan.scoring,
                                 judge_threshold=plan.judge_check.threshold, judge_check=plan.judge_check.enabled))
        await store.write(lambda c: Evaluations(c).set_report(outcome.evaluation_id, report))
    paths = await anyio.to_thread.run_sync(write_report, report, plan.out_dir)
    entry = report["evaluations"][0]
    return {
        "evaluation_id": outcome.evaluation_id, "status": entry["status"], "resumed": outcome.resumed,
        "cases": entry["cases"], "turns": entry["turns"], "summary": entry["summary"],
        "al": [t["al"] for t in entry["al"]], "judge_failures": entry["failures"]["judge"],
        "failed_cases": entry["failures"]["cases"], "retries": totals.retries, "call_failures": totals.failures,
        "truncated_calls": totals.truncated, **cost.as_dict(),
        "seconds": round(outcome.seconds, 1), "wall_s": outcome.wall_s, "case_set": entry.get("case_set"),
        **({"kappa": entry["kappa"]} if "kappa" in entry else {}),
        **summary_fields(report),
        "report": {k: str(v) for k, v in paths.items()},
    }
