"""A second judge over stored transcripts, for judge agreement (Cohen's kappa).

The paper checks its GPT-4o judge against human raters (kappa 0.789). Here
any second judge (another model, another prompt) re-scores the very replies
the first judge scored, so the two score sets are paired item by item.
"""

from __future__ import annotations

import anyio
import structlog

from ..agents import AlignmentJudgeRole
from ..agents.gateway import CallContext
from ..core.errors import LLMError
from ..environment import Persona
from ..environment.store import Evaluations, JudgedTurn, Store
from ._runner import _seed

__all__ = ["rejudge"]

log = structlog.get_logger(__name__)


async def rejudge(store: Store, evaluation_id: int, judge: AlignmentJudgeRole, *, concurrency: int = 16,
                  seed: int = 0, run_id: int | None = None) -> dict[tuple[int, int], int | None]:
    """Score every stored turn of an evaluation again with ``judge``.

    Returns ``{(case_index, turn): score}``, None where this judge failed
    (failures are logged and counted, never coerced). Nothing is written
    besides the judge's call records."""
    rows = await store.read(lambda c: Evaluations(c).judged_turns(evaluation_id))
    out: dict[tuple[int, int], int | None] = {}
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(r: JudgedTurn) -> None:
        persona = Persona(id=r.case_index, profile=r.profile, personality=r.personality, split="eval")
        key = (r.case_index, r.turn)
        async with limiter:
            try:
                score = int(await judge(persona, r.user_message, r.reply,
                                        seed=_seed(seed, key[0], key[1], 4),
                                        context=CallContext(run_id=run_id, turn=key[1], case_id=r.case_id)))
                out[key] = score if 1 <= score <= 5 else None
            except LLMError as exc:
                log.warning("evaluate.second_judge_failed", case=key[0], turn=key[1], error=str(exc))
                out[key] = None

    async with anyio.create_task_group() as tg:
        for r in rows:
            tg.start_soon(one, r)
    return dict(sorted(out.items()))
