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
from ..store import Personas, Store

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
    profiles, personalities, existing = await store.read(lambda c: (
        Personas(c).item_ids("profile", split), Personas(c).item_ids("personality", split), Personas(c).pairs(split)))
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
        await store.write(lambda c: Personas(c).add_pairs(new, split))
    report = PairReport(split, target, len(existing), len(new), len(existing) + len(new), possible)
    if target > possible and (possible or split == "train"):
        log.warning("fewer possible personas than requested", **report.as_dict())
    log.info("personas paired", **report.as_dict())
    return report


async def load_personas(store: Store, split: str | None = None) -> list[Persona]:
    """Personas with their texts, in id order (all splits when ``split`` is None)."""
    return await store.read(lambda c: Personas(c).personas(split))
