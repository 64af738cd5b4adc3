"""The judge validity check of every evaluation (issue 13.1).

Beside the cases, the evaluation's judge scores the probes of ``_probes``
(``pairs`` of them, half persona swaps, half reply swaps), each a pair of
judgements whose right order is known. Its calls are recorded under the role
``judge_check``, and each probe's result is stored (``judge_probes``), so a
re-run continues where it stopped and ``aloe report`` reads the verdict back.

The verdict: accuracy = share of probes where the right side scored higher
(a tie counts half), with a 95% Wilson interval. The judge is **reliable**
when accuracy >= ``threshold`` (0.75 by default) AND the interval's lower
bound is above 0.5. The two together: the point estimate says the judge
separates tailored from untailored replies clearly (the probes are easy: a
competent judge gets nearly all of them), and the bound says this is not
luck at this number of probes. A judge that reads nothing of the persona
sits at 0.5. The Wilson interval treats probes as independent; two mirrored
probes share a persona pair, so the interval is, if anything, a little
narrow, which the 0.75 floor more than absorbs.

With ``preference=True`` the pairwise preference judge (the one
``generation.preference_check`` uses) is checked too, on ``order_swap``
probes; its verdict is reported beside the judge's and does not mark AL(k).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import structlog

from ..agents.gateway import CallContext, ChatModel, ChatResult
from ..core.errors import LLMError
from ..environment.store import JudgeProbes, ProbeRow, Store
from ._cases import Case
from ._probes import Probe, build_probe, persona_pool
from ._settings import JudgeCheckSettings

__all__ = ["CHECK_ROLE", "run_judge_check", "summarize_probes", "wilson"]

log = structlog.get_logger(__name__)

CHECK_ROLE = "judge_check"   # role name of the probe calls in llm_calls
Z95 = 1.959963984540054


class _Relabelled:
    """A ChatModel whose calls are recorded under another role."""

    def __init__(self, model: ChatModel, role: str) -> None:
        self.model, self.role, self.name = model, role, model.name

    async def chat(self, messages: list[dict[str, str]], *, role: str, **kw: Any) -> ChatResult:
        return await self.model.chat(messages, role=self.role, **kw)


def _relabel(judge: Any) -> Any:
    if dataclasses.is_dataclass(judge) and hasattr(judge, "model"):
        return dataclasses.replace(judge, model=_Relabelled(judge.model, CHECK_ROLE))
    return judge


def _seed(base: int, index: int, kind: int, which: int) -> int:
    return (base * 1_000_003 + (100_000 + index) * 1009 + kind * 17 + which) % (2**31 - 1)


def _order(first: float, second: float) -> float:
    return 1.0 if first > second else 0.5 if first == second else 0.0


async def _score_probe(probe: Probe, judge: Any, seed: int, ctx: CallContext) -> ProbeRow:
    k = ("persona_swap", "reply_swap").index(probe.kind)
    if probe.kind == "persona_swap":
        sides = ((probe.persona_a, probe.reply_a), (probe.persona_b, probe.reply_a))
    else:
        sides = ((probe.persona_a, probe.reply_a), (probe.persona_a, probe.reply_b))
    detail = probe.detail()
    try:
        r1 = await judge.rate(sides[0][0], probe.message, sides[0][1], seed=_seed(seed, probe.index, k, 0), context=ctx)
        r2 = await judge.rate(sides[1][0], probe.message, sides[1][1], seed=_seed(seed, probe.index, k, 1), context=ctx)
    except LLMError as exc:
        return ProbeRow(probe.kind, probe.index, probe.case_a, probe.case_b, None, None, None, str(exc), detail)
    detail["expected"] = [r1.expected, r2.expected]
    return ProbeRow(probe.kind, probe.index, probe.case_a, probe.case_b, float(r1.score), float(r2.score),
                    _order(r1.score, r2.score), None, detail)


async def _vote_probe(probe: Probe, judge: Any, seed: int, ctx: CallContext) -> ProbeRow:
    try:
        verdict = await judge(probe.persona_a, [], probe.message, probe.reply_a, probe.reply_b,
                              seed=_seed(seed, probe.index, 2, 0), context=ctx)
    except LLMError as exc:
        return ProbeRow(probe.kind, probe.index, probe.case_a, probe.case_b, None, None, None, str(exc), probe.detail())
    v1, v2 = float(verdict.preferred_first), float(verdict.preferred_second)
    return ProbeRow(probe.kind, probe.index, probe.case_a, probe.case_b, v1, v2, (v1 + v2) / 2, None, probe.detail())


async def run_judge_check(store: Store, evaluation_id: int, cases: Sequence[Case], judge: Any, *,
                          settings: JudgeCheckSettings, seed: int = 0, run_id: int | None = None,
                          preference_judge: Any | None = None, concurrency: int = 16) -> list[ProbeRow]:
    """Score the probes not yet stored (or failed before) for this
    evaluation; return every stored probe. ``judge`` is the ALOE judge
    (``rate``); ``preference_judge`` the pairwise one (``__call__`` -> verdict)."""
    pool = persona_pool(cases)
    stored = await store.read(lambda c: JudgeProbes(c).of(evaluation_id))
    done = {(r.kind, r.probe) for r in stored if r.outcome is not None}
    wanted: list[tuple[str, int]] = [("persona_swap", i) for i in range((settings.pairs + 1) // 2)]
    wanted += [("reply_swap", i) for i in range(settings.pairs // 2)]
    if settings.preference and preference_judge is not None:
        wanted += [("order_swap", i) for i in range(settings.pairs)]
    todo = [w for w in wanted if w not in done]
    judge, preference_judge = _relabel(judge), _relabel(preference_judge)
    limiter = anyio.CapacityLimiter(concurrency)
    ctx = CallContext(run_id=run_id)
    log.info("judge_check.start", evaluation_id=evaluation_id, probes=len(wanted), to_run=len(todo))

    async def one(kind: str, index: int) -> None:
        probe = build_probe(pool, seed, kind, index)
        async with limiter:
            if kind == "order_swap":
                row = await _vote_probe(probe, preference_judge, seed, ctx)
            else:
                row = await _score_probe(probe, judge, seed, ctx)
        if row.error:
            log.warning("judge_check.probe_failed", kind=kind, probe=index, error=row.error)
        await store.write(lambda c: JudgeProbes(c).save(evaluation_id, row))

    async with anyio.create_task_group() as tg:
        for kind, index in todo:
            tg.start_soon(one, kind, index)
    rows = await store.read(lambda c: JudgeProbes(c).of(evaluation_id))
    verdict = summarize_probes(rows, threshold=settings.threshold, pairs=settings.pairs)
    (log.info if verdict["reliable"] else log.warning)(
        "judge_check.done", evaluation_id=evaluation_id, reliable=verdict["reliable"], accuracy=verdict["accuracy"],
        ci=verdict["ci"], pairs=verdict["pairs"], failed=verdict["failed"])
    return rows


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (``successes`` may hold halves for ties)."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _outcome(row: ProbeRow, scoring: str) -> float | None:
    if scoring == "expected" and row.kind != "order_swap":
        e = (row.detail or {}).get("expected") or [None, None]
        if e[0] is not None and e[1] is not None:
            return _order(float(e[0]), float(e[1]))
    return row.outcome


def _verdict(rows: Iterable[ProbeRow], threshold: float, scoring: str, pairs: int | None) -> dict[str, Any]:
    rows = list(rows)
    if pairs is not None:
        rows = [r for r in rows if r.probe < (pairs if r.kind == "order_swap"
                                              else (pairs + 1) // 2 if r.kind == "persona_swap" else pairs // 2)]
    outcomes = [(r, o) for r in rows if (o := _outcome(r, scoring)) is not None]
    n = len(outcomes)
    right = sum(o for _, o in outcomes)
    ties = sum(1 for _, o in outcomes if o == 0.5)
    acc = right / n if n else None
    lo, hi = wilson(right, n)
    reliable = bool(n and acc is not None and acc >= threshold and lo is not None and lo > 0.5)
    by_kind = {}
    for kind in sorted({r.kind for r, _ in outcomes}):
        ks = [o for r, o in outcomes if r.kind == kind]
        by_kind[kind] = {"pairs": len(ks), "accuracy": round(sum(ks) / len(ks), 4), "ties": ks.count(0.5)}
    out = {"pairs": n, "asked": len(rows), "failed": len(rows) - n, "accuracy": None if acc is None else round(acc, 4),
           "ci": [None if lo is None else round(lo, 4), None if hi is None else round(hi, 4)], "ci_method": "wilson",
           "level": 0.95, "ties": ties, "threshold": threshold, "scoring": scoring, "reliable": reliable,
           "by_kind": by_kind}
    out["reason"] = _reason(out)
    return out


def _reason(v: dict[str, Any]) -> str:
    if not v["pairs"]:
        return f"no probe was scored ({v['failed']} failed): nothing says the judge can tell a tailored reply"
    acc, (lo, hi) = v["accuracy"], v["ci"]
    told = (f"the judge ranked the reply written for the persona above the other in {acc:.0%} of {v['pairs']} probes "
            f"(95% CI {lo:.2f}-{hi:.2f}; ties {v['ties']})")
    if v["reliable"]:
        return told
    need = f"needs >= {v['threshold']:.2f} with a lower bound above 0.50"
    return f"{told}; {need}: scores from this judge do not measure alignment"


def summarize_probes(rows: Sequence[ProbeRow], *, threshold: float = 0.75, scoring: str = "sample",
                     pairs: int | None = None, enabled: bool = True) -> dict[str, Any]:
    """The ``judge_check`` object of a report from stored probes: the ALOE
    judge's verdict (persona and reply swaps), and under ``preference`` the
    pairwise judge's (order swaps) when it was checked. ``pairs`` limits to the
    first probes of each kind (None: all stored)."""
    judge_rows = [r for r in rows if r.kind != "order_swap"]
    if not judge_rows:
        why = ("disabled (evaluation.judge_check.enabled=false)" if not enabled
               else "not run for this evaluation")
        return {"enabled": enabled, "pairs": 0, "accuracy": None, "ci": [None, None], "threshold": threshold,
                "reliable": None, "reason": f"judge check {why}: nothing says whether the judge can tell "
                                            "a tailored reply from another"}
    out = {"enabled": True, **_verdict(judge_rows, threshold, scoring, pairs)}
    pref = [r for r in rows if r.kind == "order_swap"]
    if pref:
        out["preference"] = _verdict(pref, threshold, "sample", pairs)
    return out
