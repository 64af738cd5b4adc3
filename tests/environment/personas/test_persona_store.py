"""Pools in a real SQLite file: import, cached embeddings, seeds, pairing, splits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from persona_fakes import DictEmbedder, HashEmbedder

from aloesim.environment.personas import (
    ensure_seeds,
    from_blob,
    import_items,
    load_personas,
    load_pool,
    pair_personas,
    seed_items,
)
from aloesim.environment.store import Store, connect

pytestmark = pytest.mark.anyio


def unit(deg: float) -> list[float]:
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


TABLE = {"east": unit(0), "east-ish": unit(20), "north": unit(90), "west": unit(180), "north-ish": unit(100)}


async def test_import_filters_and_stores_embeddings(tmp_path: Path) -> None:
    emb = DictEmbedder(TABLE)
    db = tmp_path / "p.db"
    async with Store.open(db) as store:
        first = await import_items(store, "profile", ["east", "north"], emb, threshold=0.6)
        assert (first.kept, first.dropped_similar) == (2, 0)
        # east-ish: cos 20 = .94 to east -> dropped; west: -1 / 0 -> kept; north again: duplicate -> similar (1.0)
        second = await import_items(store, "profile", ["east-ish", "west", "north"], emb, threshold=0.6)
        assert (second.read, second.kept, second.dropped_similar) == (3, 1, 2)
    conn = connect(db, readonly=True)
    rows = conn.execute("SELECT text, source, embedder, embedding FROM persona_items ORDER BY id").fetchall()
    assert [r["text"] for r in rows] == ["east", "north", "west"]
    assert {r["source"] for r in rows} == {"imported"} and {r["embedder"] for r in rows} == {"dict-test"}
    np.testing.assert_allclose(from_blob(rows[2]["embedding"]), unit(180), atol=1e-6)


async def test_import_without_filter_keeps_all_but_exact_duplicates(tmp_path: Path) -> None:
    emb = DictEmbedder(TABLE)
    async with Store.open(tmp_path / "p.db") as store:
        await import_items(store, "personality", ["east"], emb, threshold=None)
        rep = await import_items(store, "personality", ["east", "east-ish", "east-ish", "north"], emb, threshold=None)
        assert (rep.kept, rep.dropped_similar, rep.dropped_duplicate) == (2, 0, 2)
        pool = await load_pool(store, "personality", "train", emb)
        assert pool.texts == ["east", "east-ish", "north"]


async def test_embeddings_are_computed_once_and_redone_for_another_embedder(tmp_path: Path) -> None:
    emb = HashEmbedder()
    async with Store.open(tmp_path / "p.db") as store:
        await import_items(store, "profile", ["a b c d e", "f g h i j"], emb, threshold=0.6)
        n = emb.encoded
        pool = await load_pool(store, "profile", "train", emb)
        assert emb.encoded == n and pool.vectors.shape == (2, 256)      # read from the store
        other = HashEmbedder(dim=8, name="other")
        pool2 = await load_pool(store, "profile", "train", other)
        assert other.encoded == 2 and pool2.vectors.shape == (2, 8)   # stale: re-encoded once ...
        await load_pool(store, "profile", "train", other)
        assert other.encoded == 2                                     # ... and stored


async def test_seeds_go_into_empty_pools_only(tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    assert len(seed_items("profile")) == 20 and len(seed_items("personality")) == 20
    assert len(seed_items("profile", "eval")) == 5 and len(seed_items("personality", "eval")) == 5
    async with Store.open(tmp_path / "p.db") as store:
        assert await ensure_seeds(store, "profile", "train", hash_embedder) == 20
        assert await ensure_seeds(store, "profile", "train", hash_embedder) == 0
        assert await ensure_seeds(store, "profile", "eval", hash_embedder) == 5
        pool = await load_pool(store, "profile", "train", hash_embedder)
        assert pool.texts == seed_items("profile") and pool.iterations == [None] * 20


async def test_seed_sets_are_distinct_writing() -> None:
    everything = seed_items("profile") + seed_items("personality") + seed_items("profile", "eval") + seed_items(
        "personality", "eval")
    assert len(set(everything)) == 50
    assert all(len(t.split()) >= 20 for t in everything)


async def _pools(store: Store, emb: HashEmbedder, n_prof: int, n_pers: int, split: str) -> None:
    await import_items(store, "profile", [f"{split} profile {i} x y z" for i in range(n_prof)], emb, split=split,
                       threshold=None)
    await import_items(store, "personality", [f"{split} personality {i} x y z" for i in range(n_pers)], emb,
                       split=split, threshold=None)


async def test_pairing_without_repeats_seeded_and_topped_up(tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        await _pools(store, hash_embedder, 6, 4, "train")
        rep = await pair_personas(store, split="train", target=10, seed=3)
        assert (rep.added, rep.total, rep.possible) == (10, 10, 24)
        rep2 = await pair_personas(store, split="train", target=15, seed=3)
        assert (rep2.before, rep2.added) == (10, 5)
        everything = await pair_personas(store, split="train", target=100, seed=3)
        assert everything.total == 24
        personas = await load_personas(store, "train")
        pairs = [(p.profile, p.personality) for p in personas]
        assert len(set(pairs)) == 24
        first10 = pairs[:10]
    async with Store.open(tmp_path / "b.db") as store:
        await _pools(store, hash_embedder, 6, 4, "train")
        await pair_personas(store, split="train", target=10, seed=3)
        assert [(p.profile, p.personality) for p in await load_personas(store)] == first10
    async with Store.open(tmp_path / "c.db") as store:
        await _pools(store, hash_embedder, 6, 4, "train")
        await pair_personas(store, split="train", target=10, seed=4)
        assert [(p.profile, p.personality) for p in await load_personas(store)] != first10


async def test_eval_and_train_personas_never_mix(tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        await _pools(store, hash_embedder, 5, 5, "train")
        await _pools(store, hash_embedder, 3, 2, "eval")
        await pair_personas(store, split="train", target=25, seed=0)
        rep = await pair_personas(store, split="eval", target=100, seed=0)
        assert rep.total == 6
        train, evaluation = await load_personas(store, "train"), await load_personas(store, "eval")
    assert len(train) == 25 and len(evaluation) == 6
    assert all(p.profile.startswith("train") and p.personality.startswith("train") and p.split == "train" for p in train)
    assert all(p.profile.startswith("eval") and p.personality.startswith("eval") and p.split == "eval"
               for p in evaluation)


async def test_import_checks_train_items_against_a_reference(tmp_path: Path) -> None:
    emb = DictEmbedder(TABLE)
    async with Store.open(tmp_path / "a.db") as store:
        await import_items(store, "profile", ["north"], emb, split="eval", threshold=None)
        ref = (await load_pool(store, "profile", "eval", emb)).vectors
        rep = await import_items(store, "profile", ["north-ish", "east"], emb, threshold=0.6, reference=ref)
        assert rep.kept == 1
        assert (await load_pool(store, "profile", "train", emb)).texts == ["east"]


def test_public_names_resolve() -> None:
    from aloesim.environment import personas

    assert sorted(personas.__all__) == sorted(set(personas.__all__))
    assert all(hasattr(personas, name) for name in personas.__all__)
