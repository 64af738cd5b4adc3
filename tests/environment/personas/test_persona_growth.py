"""The growth loop with a scripted generator and known vectors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pytest
from persona_fakes import HashEmbedder
from structlog.testing import capture_logs

from aloesim.environment.personas import (
    GenerationRequest,
    GrowthSettings,
    grow_pool,
    import_items,
    load_pool,
)
from aloesim.environment.store import Store
from tests.support.store import fetchall, fetchval

pytestmark = pytest.mark.anyio

SEEDS = [f"seed item number {i} about someone" for i in range(6)]


class FakeGenerator:
    """Writes ``per_call`` new items per request; each depends on the iteration
    and on the examples (so the sampling matters), and every third one is a
    near-copy of an example (so the filter matters). ``delay(iteration)``
    sets how long each call takes; ``fail_at`` raises at that iteration;
    ``stale_from``: from that iteration on, only near-copies are written."""

    def __init__(self, per_call: int = 4, delay=lambda k: 0.0, fail_at: int | None = None,
                 stale_from: int | None = None) -> None:
        self.per_call, self.delay, self.fail_at, self.stale_from = per_call, delay, fail_at, stale_from
        self.requests: list[GenerationRequest] = []
        self.in_flight = self.peak = 0

    async def __call__(self, req: GenerationRequest) -> list[str]:
        self.requests.append(req)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(self.delay(req.iteration))
        finally:
            self.in_flight -= 1
        if req.iteration == self.fail_at:
            raise RuntimeError("model went away")
        tag = hashlib.sha256("|".join(req.examples).encode()).hexdigest()[:8]
        if self.stale_from is not None and req.iteration >= self.stale_from:
            return [f"near:{e}" for e in req.examples]
        out = []
        for j in range(self.per_call):
            out.append(f"near:{req.examples[0]}" if j % 3 == 2 else f"iteration {req.iteration} item {j} tag {tag}")
        return out


async def _seeded(store: Store, emb: HashEmbedder) -> None:
    await import_items(store, "profile", SEEDS, emb, threshold=None)


async def _events(store: Store) -> list[dict]:
    rows = await fetchall(store, "SELECT payload FROM events WHERE kind = 'personas.profile.iteration' ORDER BY id")
    return [json.loads(r[0]) for r in rows]


async def test_grows_to_target_committing_each_iteration(tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    gen = FakeGenerator(per_call=4)  # 3 new items + 1 near-copy per call
    settings = GrowthSettings(target=14, threshold=0.6, batch=4, shots=3, parallel=1, seed=1)
    async with Store.open(tmp_path / "g.db") as store:
        await _seeded(store, hash_embedder)
        report = await grow_pool(store, "profile", gen, hash_embedder, settings, run_id=None)
        assert (report.stop, report.size, report.start_size) == ("target", 14, 6)
        events = await _events(store)
        assert [e["added"] for e in events] == [3, 3, 2]           # last one truncated at the target
        assert [e["rejected"]["pool"] for e in events] == [1, 1, 1]  # the near-copies
        rows = await fetchall(store, "SELECT iteration, COUNT(*) FROM persona_items WHERE source = 'generated'"
                                    " GROUP BY iteration ORDER BY iteration")
        assert [tuple(r) for r in rows] == [(0, 3), (1, 3), (2, 2)]
    assert all(len(r.examples) == 3 and r.n == 4 for r in gen.requests)


async def _grow_db(path: Path, gen: FakeGenerator, settings: GrowthSettings) -> tuple[list[str], list[dict]]:
    emb = HashEmbedder()
    async with Store.open(path) as store:
        if not (await fetchval(store, "SELECT COUNT(*) FROM persona_items")):
            await _seeded(store, emb)
        await grow_pool(store, "profile", gen, emb, settings)
        pool = await load_pool(store, "profile", "train", emb)
        return pool.texts, await _events(store)


async def test_same_seed_same_pool_whatever_the_timing(tmp_path: Path) -> None:
    settings = GrowthSettings(target=40, threshold=0.6, batch=5, shots=3, parallel=3, seed=7)
    fast_first = FakeGenerator(per_call=5, delay=lambda k: 0.001 * (k % 3))
    slow_first = FakeGenerator(per_call=5, delay=lambda k: 0.01 * (3 - k % 3))
    a = await _grow_db(tmp_path / "a.db", fast_first, settings)
    b = await _grow_db(tmp_path / "b.db", slow_first, settings)
    assert a == b and len(a[0]) == 40
    other = await _grow_db(tmp_path / "c.db", FakeGenerator(per_call=5), GrowthSettings(**{**settings.__dict__, "seed": 8}))
    assert other[0] != a[0]
    # iterations of one round see the pool as it was at the round's start
    by_it = {r.iteration: r for r in fast_first.requests}
    round_start_pool = set(SEEDS) | {t for t in a[0] if t.startswith(("iteration 0 ", "iteration 1 ", "iteration 2 "))}
    assert all(set(by_it[k].examples) <= round_start_pool for k in (3, 4, 5))


async def test_parallel_bounds_generator_calls(tmp_path: Path) -> None:
    gen = FakeGenerator(per_call=5, delay=lambda k: 0.02)
    await _grow_db(tmp_path / "a.db", gen, GrowthSettings(target=60, batch=5, shots=2, parallel=3))
    assert gen.peak == 3


async def test_bottleneck_stops_and_stays_stopped(tmp_path: Path) -> None:
    gen = FakeGenerator(per_call=4, stale_from=2)
    settings = GrowthSettings(target=100, batch=4, shots=3, parallel=2, bottleneck_window=3, bottleneck_min=1)
    emb = HashEmbedder()
    async with Store.open(tmp_path / "a.db") as store:
        await _seeded(store, emb)
        report = await grow_pool(store, "profile", gen, emb, settings)
        assert report.stop == "bottleneck"
        assert [e["added"] for e in await _events(store)] == [3, 3, 0, 0, 0]
        assert report.iterations == 5 and report.next_iteration == 5
        again = await grow_pool(store, "profile", gen, emb, settings)
        assert (again.stop, again.iterations) == ("bottleneck", 0)


async def test_max_iterations_counts_across_runs(tmp_path: Path) -> None:
    settings = GrowthSettings(target=100, batch=4, shots=3, parallel=2, max_iterations=3)
    texts, events = await _grow_db(tmp_path / "a.db", FakeGenerator(), settings)
    assert [e["iteration"] for e in events] == [0, 1, 2]
    texts2, events2 = await _grow_db(tmp_path / "a.db", FakeGenerator(), settings)
    assert events2 == events and texts2 == texts


async def test_resume_after_a_crash_gives_the_same_pool(tmp_path: Path) -> None:
    settings = GrowthSettings(target=30, threshold=0.6, batch=4, shots=3, parallel=2, seed=3)
    whole = await _grow_db(tmp_path / "whole.db", FakeGenerator(), settings)
    emb = HashEmbedder()
    async with Store.open(tmp_path / "crash.db") as store:
        await _seeded(store, emb)
        with pytest.raises(RuntimeError, match="model went away"):  # the lone error itself, not a group
            await grow_pool(store, "profile", FakeGenerator(fail_at=3), emb, settings)
        partial = await _events(store)
    assert [e["iteration"] for e in partial] == [0, 1]  # round [2, 3] failed: nothing of it committed
    resumed = await _grow_db(tmp_path / "crash.db", FakeGenerator(), settings)
    assert resumed[0] == whole[0]
    assert [(e["iteration"], e["added"]) for e in resumed[1]] == [(e["iteration"], e["added"]) for e in whole[1]]


async def test_reference_items_are_not_copied(tmp_path: Path) -> None:
    emb = HashEmbedder()
    ref_texts = ["a benchmark persona one", "a benchmark persona two"]

    async def gen(req: GenerationRequest) -> list[str]:
        return [f"near:{ref_texts[req.iteration % 2]}", f"fresh item {req.iteration}"]

    async with Store.open(tmp_path / "a.db") as store:
        await _seeded(store, emb)
        await import_items(store, "profile", ref_texts, emb, split="eval", threshold=None)
        ref = (await load_pool(store, "profile", "eval", emb)).vectors
        report = await grow_pool(store, "profile", gen, emb, GrowthSettings(target=9, batch=2, parallel=1),
                                 reference=ref)
        pool = await load_pool(store, "profile", "train", emb)
        events = await _events(store)
    assert report.size == 9
    assert not any(t.startswith("near:") for t in pool.texts)
    assert all(e["rejected"]["reference"] == 1 for e in events)


async def test_warns_when_nearly_everything_is_rejected(tmp_path: Path) -> None:
    gen = FakeGenerator(per_call=4, stale_from=0)
    settings = GrowthSettings(target=100, batch=4, parallel=2, bottleneck_window=4, bottleneck_min=1)
    emb = HashEmbedder()
    async with Store.open(tmp_path / "a.db") as store:
        await _seeded(store, emb)
        with capture_logs() as logs:
            report = await grow_pool(store, "profile", gen, emb, settings)
    assert report.added == 0 and report.stop == "bottleneck"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["event"] == report.outcome and report.warn
    assert report.outcome.startswith(f"profile pool: 0 of {report.generated} generated profiles kept: ")
    assert f"{report.dropped['pool']} within 0.6 cosine of the pool" in report.outcome
    assert "threshold is probably too low" in report.outcome and "personas.action=stats" in report.outcome
    assert "stopped at a bottleneck" in report.outcome
    assert warnings[0]["generated"] == report.generated == sum(report.dropped.values())


async def test_says_why_a_pool_grew_by_nothing(tmp_path: Path) -> None:
    """The demo's case: a few candidates, all near the pool, one iteration allowed."""
    gen = FakeGenerator(per_call=2, stale_from=0)
    settings = GrowthSettings(target=24, batch=20, shots=2, parallel=1, max_iterations=1)
    emb = HashEmbedder()
    async with Store.open(tmp_path / "a.db") as store:
        await _seeded(store, emb)
        with capture_logs() as logs:
            report = await grow_pool(store, "profile", gen, emb, settings)
    assert (report.generated, report.added, report.requested) == (2, 0, 20)
    assert report.outcome == (
        "profile pool: 0 of 2 generated profiles kept (20 requested): 2 within 0.6 cosine of the pool; "
        "stopped at personas.max_iterations after 1 iteration(s), size 6 -> 6; see `aloe personas "
        "personas.action=stats` for the pool's similarities, or set personas.threshold / personas.keep_rate")
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [report.outcome]


async def test_reaching_the_target_is_no_warning(tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    settings = GrowthSettings(target=8, threshold=0.6, batch=4, shots=3, parallel=1, seed=1)
    async with Store.open(tmp_path / "g.db") as store:
        await _seeded(store, hash_embedder)
        with capture_logs() as logs:
            report = await grow_pool(store, "profile", FakeGenerator(per_call=4), hash_embedder, settings)
    assert report.stop == "target" and not report.warn
    assert report.outcome.startswith(f"profile pool: {report.added} of {report.generated} generated profiles kept")
    assert "reached the target of 8" in report.outcome
    assert not [e for e in logs if e["log_level"] == "warning"]


async def test_empty_pool_is_refused(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        with pytest.raises(ValueError, match="empty"):
            await grow_pool(store, "profile", FakeGenerator(), HashEmbedder(), GrowthSettings(target=5))


def test_lone_error_unwraps_groups() -> None:
    from aloesim.core import LLMError, lone_error

    one = LLMError("generator", "x", "down")
    with pytest.raises(LLMError) as info, lone_error():
        raise ExceptionGroup("g", [ExceptionGroup("inner", [one])])
    assert info.value is one
    two = LLMError("generator", "y", "down too")
    with pytest.raises(LLMError) as info, lone_error():
        raise ExceptionGroup("g", [one, two])
    assert info.value is one                      # all deliberate errors: the first one
    with pytest.raises(ExceptionGroup), lone_error():
        raise ExceptionGroup("g", [one, KeyError("bug")])  # a bug among them keeps the group
