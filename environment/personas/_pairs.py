"""Personas: profile x personality pairs (paper: 330 x 71 pools, 3,310 personas).

Pairs are drawn without repeats, within one split (evaluation personas are
built only from evaluation items, training personas only from training
items), in an order fixed by the seed. Pairing tops up: pairs already stored
stay, and new ones are added until the split holds ``target`` personas (or
every possible pair).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import structlog

from .._types import Persona
from ..store import Store, now

__all__ = ["PairReport", "load_personas", "pair_personas"]

log = structlog.get_logger(__name__)

_PERMUTE_MAX = 4_000_000  # pool products up to this size are permuted in full


@dataclass(frozen=True)
class PairReport:
    split: str
    target: int
    before: int
    added: int
    total: int
    possible: int

    def as_dict(self) -> dict:
        return asdict(self)


def _order(n: int, want: int, rng: np.random.Generator):
    """Indices into range(n) in a seeded order, without repeats."""
    if n <= _PERMUTE_MAX:
        yield from rng.permutation(n).tolist()
        return
    seen: set[int] = set()
    while len(seen) < n:
        for i in rng.integers(0, n, size=max(1024, 2 * want)).tolist():
            if i not in seen:
                seen.add(i)
                yield i


async def pair_personas(store: Store, *, split: str = "train", target: int, seed: int = 0) -> PairReport:
    """Top the personas of ``split`` up to ``target`` pairs; see the module docstring."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    q = "SELECT id FROM persona_items WHERE kind = ? AND split = ? ORDER BY id"
    profiles = [r[0] for r in await store.fetchall(q, ("profile", split))]
    personalities = [r[0] for r in await store.fetchall(q, ("personality", split))]
    existing = {(r[0], r[1]) for r in await store.fetchall(
        "SELECT profile_id, personality_id FROM personas WHERE split = ?", (split,))}
    possible = len(profiles) * len(personalities)
    want = min(target, possible) - len(existing)
    new: list[tuple[int, int]] = []
    if want > 0:
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        for idx in _order(possible, want, rng):
            pair = (profiles[idx // len(personalities)], personalities[idx % len(personalities)])
            if pair not in existing:
                new.append(pair)
                if len(new) == want:
                    break
        t = now()
        rows = [(p, q_, split, t) for p, q_ in new]
        await store.write(lambda c: c.executemany(
            "INSERT OR IGNORE INTO personas (profile_id, personality_id, split, created_at) VALUES (?, ?, ?, ?)", rows))
    report = PairReport(split, target, len(existing), len(new), len(existing) + len(new), possible)
    if target > possible and (possible or split == "train"):
        log.warning("fewer possible personas than requested", **report.as_dict())
    log.info("personas paired", **report.as_dict())
    return report


async def load_personas(store: Store, split: str | None = None) -> list[Persona]:
    """Personas with their texts, in id order (all splits when ``split`` is None)."""
    sql = ("SELECT p.id, a.text AS profile, b.text AS personality, p.split FROM personas p"
           " JOIN persona_items a ON a.id = p.profile_id JOIN persona_items b ON b.id = p.personality_id")
    params: tuple = ()
    if split is not None:
        sql += " WHERE p.split = ?"
        params = (split,)
    rows = await store.fetchall(sql + " ORDER BY p.id", params)
    return [Persona(r["id"], r["profile"], r["personality"], r["split"]) for r in rows]
