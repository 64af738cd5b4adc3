"""Growing a pool by iterative self-generation (paper section 2.1, Figure 2).

Iteration k samples ``shots`` examples from the pool with an RNG seeded by
(seed, kind, k), asks the generator for ``batch`` new items, embeds them and
keeps those the similarity filter accepts. It stops at the target size, at
a bottleneck (fewer than ``bottleneck_min`` items added over the last
``bottleneck_window`` iterations) or after ``max_iterations`` iterations.

Iterations are generated ``parallel`` at a time, in rounds
[r*parallel, (r+1)*parallel): every iteration of a round samples its examples
from the pool as it stood when the round began, and acceptance is applied
one iteration at a time in iteration order. So the same seed and settings
give the same pool whatever the timing, and a run that was killed and
started again continues exactly where it stopped: each iteration's items
and its record (an ``events`` row of kind ``personas.<kind>.iteration``)
are committed together, and the next run reads them back.

The generator is injected (environment knows nothing of LLMs): an async
callable taking a ``GenerationRequest`` and returning candidate texts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import anyio
import numpy as np
import structlog

from ...core import lone_error
from ..store import Store, Trees
from ._embed import Embedder, embed
from ._filter import filter_candidates
from ._pool import KINDS, Pool, add_items, load_pool

__all__ = ["Generate", "GenerationRequest", "GrowthReport", "GrowthSettings", "grow_pool", "iteration_seed"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class GenerationRequest:
    """What the generator is asked for in one iteration."""

    kind: str                  # 'profile' | 'personality'
    examples: tuple[str, ...]  # few-shot examples sampled from the pool
    n: int                     # how many new items to write
    iteration: int
    seed: int                  # per-iteration seed for the model's sampling


Generate = Callable[[GenerationRequest], Awaitable[list[str]]]


@dataclass(frozen=True)
class GrowthSettings:
    """How one pool grows. Validated by the caller (the command's config)."""

    target: int
    threshold: float = 0.6
    batch: int = 20
    shots: int = 5
    parallel: int = 2
    bottleneck_window: int = 10
    bottleneck_min: int = 3
    max_iterations: int = 500
    seed: int = 0
    warn_keep_rate: float = 0.05


@dataclass
class GrowthReport:
    """What one call of ``grow_pool`` did."""

    kind: str
    start_size: int
    size: int = 0
    iterations: int = 0          # iterations run by this call
    next_iteration: int = 0      # where a later run continues
    generated: int = 0           # candidates produced by this call
    added: int = 0
    stop: str = ""               # target | bottleneck | max_iterations
    threshold: float = 0.0
    target: int = 0
    requested: int = 0           # items asked of the generator (batch x iterations)
    # why candidates were not added: already in the pool (same text), within the threshold of the pool,
    # of an earlier item of the same batch, of an eval item; or past the target
    dropped: dict[str, int] = field(default_factory=lambda: {
        "duplicate": 0, "pool": 0, "batch": 0, "reference": 0, "over_target": 0})
    outcome: str = ""            # one sentence: what this call did and why
    warn: bool = False           # the outcome is worth a warning (short of the target, or collapsing)
    log: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["log"]
        return out

    def explain(self, collapsing: bool = False) -> str:
        """One sentence for the user: kept of generated, why the others were dropped, why it stopped."""
        plural = "profiles" if self.kind == "profile" else "personalities"
        said = (f"{self.kind} pool: {self.added} of {self.generated} generated {plural} kept"
                f" ({self.requested} requested)" if self.generated < self.requested else
                f"{self.kind} pool: {self.added} of {self.generated} generated {plural} kept")
        why = {"pool": f"within {self.threshold:g} cosine of the pool",
               "batch": f"within {self.threshold:g} cosine of another new item",
               "reference": f"within {self.threshold:g} cosine of an evaluation item",
               "duplicate": "already in the pool", "over_target": "past the target"}
        reasons = [f"{n} {why[k]}" for k, n in self.dropped.items() if n]
        if reasons:
            said += ": " + ", ".join(reasons)
        stop = {"target": f"reached the target of {self.target}",
                "bottleneck": "stopped at a bottleneck (personas.bottleneck)",
                "max_iterations": "stopped at personas.max_iterations"}.get(self.stop, "stopped")
        said += f"; {stop} after {self.iterations} iteration(s), size {self.start_size} -> {self.size}"
        if collapsing:
            said += "; the threshold is probably too low for this embedder"
        if (collapsing or self.stop != "target") and self.dropped["pool"] + self.dropped["batch"] + self.dropped["reference"]:
            said += ("; see `aloe personas personas.action=stats` for the pool's similarities, or set "
                     "personas.threshold / personas.keep_rate")
        return said


def iteration_seed(seed: int, kind: str, iteration: int) -> int:
    """A stable 31-bit seed for (run seed, pool kind, iteration)."""
    rng = np.random.default_rng([seed, KINDS.index(kind), iteration])
    return int(rng.integers(0, 2**31 - 1))


def _event_kind(kind: str) -> str:
    return f"personas.{kind}.iteration"


async def _history(store: Store, kind: str) -> list[dict]:
    return await store.read(lambda c: Trees(c).event_payloads(_event_kind(kind)))


def _examples(pool: Pool, round_start: int, request_iteration: int, shots: int, seed: int) -> tuple[str, ...]:
    """Examples from the pool as it stood at the start of the round."""
    snapshot = [t for t, it in zip(pool.texts, pool.iterations) if it is None or it < round_start]
    rng = np.random.default_rng([seed, KINDS.index(pool.kind), request_iteration])
    picks = rng.choice(len(snapshot), size=min(shots, len(snapshot)), replace=False)
    return tuple(snapshot[int(i)] for i in picks)


def _stop_reason(size: int, iteration: int, history: list[dict], s: GrowthSettings) -> str:
    if size >= s.target:
        return "target"
    window = history[-s.bottleneck_window:] if s.bottleneck_window else []
    if s.bottleneck_window and len(window) == s.bottleneck_window and sum(h["added"] for h in window) < s.bottleneck_min:
        return "bottleneck"
    if iteration >= s.max_iterations:
        return "max_iterations"
    return ""


def _dedupe(texts: list[str], known: set[str]) -> list[str]:
    out, seen = [], set(known)
    for t in texts:
        t = t.strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


async def grow_pool(
    store: Store,
    kind: str,
    generate: Generate,
    embedder: Embedder,
    settings: GrowthSettings,
    *,
    run_id: int | None = None,
    reference: np.ndarray | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> GrowthReport:
    """Grow the train pool of ``kind`` until a stop condition; see the module
    docstring. ``reference`` (e.g. the eval pool's vectors) is also checked by
    the filter. The pool must not be empty (put the seeds in first)."""
    s = settings
    pool = await load_pool(store, kind, "train", embedder, limiter)
    if not len(pool):
        raise ValueError(f"the {kind} pool is empty: add the seed examples first")
    history = await _history(store, kind)
    it = (history[-1]["iteration"] + 1) if history else 0
    report = GrowthReport(kind, start_size=len(pool), size=len(pool), threshold=s.threshold, target=s.target)
    kept_total = 0

    while not (stop := _stop_reason(len(pool), it, history, s)):
        round_start = it - it % s.parallel
        todo = list(range(it, min(round_start + s.parallel, s.max_iterations)))
        requests = [GenerationRequest(kind, _examples(pool, round_start, k, s.shots, s.seed), s.batch, k,
                                      iteration_seed(s.seed, kind, k)) for k in todo]
        results: list[tuple[list[str], np.ndarray] | None] = [None] * len(todo)

        async def produce(slot: int, req: GenerationRequest, results: list = results) -> None:
            texts = _dedupe(list(await generate(req)), set())
            vecs = await embed(embedder, texts, limiter) if texts else np.zeros((0, pool.vectors.shape[1]), np.float32)
            results[slot] = (texts, vecs)

        with lone_error():
            async with anyio.create_task_group() as tg:
                for slot, req in enumerate(requests):
                    tg.start_soon(produce, slot, req)

        for req, result in zip(requests, results):
            if (stop := _stop_reason(len(pool), req.iteration, history, s)):
                break
            assert result is not None
            texts, vecs = result
            known = set(pool.texts)
            fresh = [i for i, t in enumerate(texts) if t not in known]
            res = filter_candidates(vecs[fresh], pool.vectors, s.threshold, reference=reference)
            chosen = [fresh[i] for i in res.kept][: max(0, s.target - len(pool))]
            rejected = {"pool": len(texts) - len(fresh), "batch": 0, "reference": 0}
            report.dropped["duplicate"] += len(texts) - len(fresh)
            report.dropped["over_target"] += len(res.kept) - len(chosen)
            for r in res.reason:
                if r:
                    rejected[r] += 1
                    report.dropped[r] += 1
            record = {"iteration": req.iteration, "run_id": run_id, "generated": len(texts), "added": len(chosen),
                      "rejected": rejected, "threshold": s.threshold, "examples": len(req.examples)}
            kept_texts, kept_vecs = [texts[i] for i in chosen], vecs[chosen]

            def commit(c: sqlite3.Connection, req=req, record=record, kept_texts=kept_texts, kept_vecs=kept_vecs):
                ids = add_items(c, kind, "train", kept_texts, kept_vecs, embedder.name, source="generated",
                                run_id=run_id, iteration=req.iteration)
                Trees(c).add_event(run_id, None, _event_kind(kind), record)
                return ids

            ids = await store.write(commit)
            pool.extend([i for i in ids if i is not None], [t for t, i in zip(kept_texts, ids) if i is not None],
                        kept_vecs[[j for j, i in enumerate(ids) if i is not None]], req.iteration)
            history.append(record)
            report.iterations += 1
            report.generated += len(texts)
            report.requested += req.n
            report.added += len(chosen)
            report.log.append(record)
            kept_total += len(chosen)
            it = req.iteration + 1
            log.info("persona iteration", kind=kind, iteration=req.iteration, generated=len(texts),
                     added=len(chosen), size=len(pool), target=s.target)
        if stop:
            break

    report.size = len(pool)
    report.next_iteration = it
    report.stop = stop
    collapsing = report.generated >= 10 and kept_total < s.warn_keep_rate * report.generated
    report.outcome = report.explain(collapsing)
    report.warn = stop != "target" or collapsing
    # short of the target, or nearly everything rejected: say why as a warning; else an info line
    fields = {k: v for k, v in report.as_dict().items() if k != "outcome"}
    (log.warning if report.warn else log.info)(report.outcome, **fields)
    return report
