"""The real bundled all-MiniLM-L6-v2 on real text."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from aloesim.environment.personas import (
    embed,
    filter_candidates,
    import_items,
    load_pool,
    seed_items,
    similarity_stats,
)
from aloesim.environment.store import Store

pytestmark = [pytest.mark.integration]


def test_vectors_are_normalised_float32_and_meaningful(minilm) -> None:
    texts = [
        "A retired nurse who grows tomatoes and looks after her grandchildren.",
        "A retired nurse who grows vegetables and babysits her grandkids.",
        "A 22-year-old esports player who streams every night from Seoul.",
    ]
    v = minilm.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > 0.6 > sims[0, 2]  # paraphrase vs. unrelated person
    res = filter_candidates(v[1:], v[:1], 0.6)
    assert res.keep == (False, True) and res.reason[0] == "pool"
    assert minilm.name == "all-MiniLM-L6-v2"


@pytest.mark.anyio
async def test_encoding_runs_off_the_event_loop(minilm) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    texts = seed_items("profile") * 5
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        vecs = await embed(minilm, texts, anyio.CapacityLimiter(1))
        tg.cancel_scope.cancel()
    assert vecs.shape == (100, 384)
    assert ticks >= 3  # the loop kept running while the model encoded


@pytest.mark.anyio
async def test_seed_pools_pass_their_own_filter_mostly(tmp_path: Path, minilm) -> None:
    """Our hand-written seeds are diverse under MiniLM: the profiles all pass 0.6."""
    profiles = seed_items("profile")
    st = similarity_stats(minilm.encode(profiles), thresholds=(0.6,))
    assert st["kept_at_threshold"]["0.6"] == 20
    async with Store.open(tmp_path / "m.db") as store:
        rep = await import_items(store, "profile", profiles, minilm, threshold=0.6)
        again = await import_items(store, "profile", [p.upper() for p in profiles[:3]], minilm, threshold=0.6)
        pool = await load_pool(store, "profile", "train", minilm)
    assert rep.kept == 20 and again.kept == 0  # upper-cased copies are near-identical
    assert pool.vectors.shape == (20, 384)
