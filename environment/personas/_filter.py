"""The semantic-similarity filter of the persona pool (paper section 2.1).

A candidate is kept iff its largest cosine similarity to the pool, to the
candidates already kept from the same batch, and (optionally) to a
reference set such as the evaluation personas, is at most the threshold
(paper: 0.6). Candidates are judged in the order given, so the result is a
pure function of (candidates, pool, reference, threshold).

All vectors are L2-normalised float32 rows, so a cosine similarity is a dot
product and the pool is compared with one matrix product per batch; nothing
is re-encoded.

The threshold depends on the embedder: ``similarity_stats`` describes a
pool's similarity distribution and ``calibrate_threshold`` picks the
threshold that keeps a target share of a reference set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "THRESHOLD_GRID",
    "FilterResult",
    "calibrate_threshold",
    "describe_filter",
    "filter_candidates",
    "greedy_keep_count",
    "similarity_stats",
]

#: thresholds tried by calibration and reported by stats: 0.00, 0.01, ..., 1.00
THRESHOLD_GRID: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))


@dataclass(frozen=True)
class FilterResult:
    """Per candidate, in input order: kept or not, the largest similarity that
    decided it, and why it was dropped ('' when kept; 'pool', 'batch' or
    'reference' naming the set holding its nearest neighbour)."""

    keep: tuple[bool, ...]
    max_similarity: tuple[float, ...]
    reason: tuple[str, ...]

    @property
    def kept(self) -> list[int]:
        return [i for i, k in enumerate(self.keep) if k]

    @property
    def n_kept(self) -> int:
        return sum(self.keep)


def _as_matrix(x: np.ndarray | None, dim: int) -> np.ndarray:
    if x is None:
        return np.zeros((0, dim), dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(0, dim) if x.size == 0 else x


def _row_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.full(len(a), -np.inf, dtype=np.float32)
    return (a @ b.T).max(axis=1)


def filter_candidates(
    candidates: np.ndarray,
    pool: np.ndarray | None,
    threshold: float,
    *,
    reference: np.ndarray | None = None,
) -> FilterResult:
    """Judge ``candidates`` (n x d) in order against ``pool`` (m x d), the
    candidates kept before them, and ``reference`` (r x d)."""
    cand = np.asarray(candidates, dtype=np.float32)
    if cand.ndim != 2:
        raise ValueError(f"candidates must be a 2-d matrix, got shape {cand.shape}")
    n, dim = cand.shape
    to_pool = _row_max(cand, _as_matrix(pool, dim))
    to_ref = _row_max(cand, _as_matrix(reference, dim))
    # to_batch[j]: largest similarity of candidate j to the candidates kept so far
    # (all before j, since they are judged in order); updated row by row.
    to_batch = np.full(n, -np.inf, dtype=np.float32)
    keep: list[bool] = []
    sims: list[float] = []
    reasons: list[str] = []
    for i in range(n):
        scores = {"pool": float(to_pool[i]), "batch": float(to_batch[i]), "reference": float(to_ref[i])}
        nearest = max(scores, key=scores.__getitem__)
        best = scores[nearest]
        ok = best <= threshold
        keep.append(ok)
        sims.append(best)
        reasons.append("" if ok else nearest)
        if ok and i + 1 < n:
            np.maximum(to_batch[i + 1:], cand[i + 1:] @ cand[i], out=to_batch[i + 1:])
    return FilterResult(tuple(keep), tuple(sims), tuple(reasons))


def greedy_keep_count(vectors: np.ndarray, thresholds: Sequence[float]) -> dict[float, int]:
    """How many of ``vectors`` the filter keeps, judging them in order from an
    empty pool, for each threshold."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return {float(t): 0 for t in thresholds}
    gram = vectors @ vectors.T
    out: dict[float, int] = {}
    for t in thresholds:
        blocked = np.zeros(n, dtype=bool)
        count = 0
        for i in range(n):
            if not blocked[i]:
                count += 1
                blocked[i + 1:] |= gram[i, i + 1:] > t
        out[float(t)] = count
    return out


def calibrate_threshold(vectors: np.ndarray, keep_rate: float, grid: Sequence[float] = THRESHOLD_GRID) -> float:
    """The smallest threshold of ``grid`` at which the filter, run over
    ``vectors`` in order, keeps at least ``keep_rate`` of them."""
    n = len(vectors)
    if n == 0:
        raise ValueError("cannot calibrate on an empty set")
    need = keep_rate * n
    counts = greedy_keep_count(vectors, grid)
    for t in sorted(counts):
        if counts[t] >= need - 1e-9:
            return t
    return max(grid)


def similarity_stats(vectors: np.ndarray, thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
                     keep_rates: Sequence[float] = (0.25, 0.5, 0.75, 0.9)) -> dict:
    """The similarity distribution of a pool: nearest-neighbour and pairwise
    percentiles, a histogram of nearest-neighbour similarities (10 bins over
    [0, 1], negatives counted in the first), how many items each threshold
    would keep, and the threshold each keep-rate needs."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    out: dict = {"n": n}
    if n < 2:
        out["note"] = "fewer than 2 items: no similarities"
        return out
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    nn = gram.max(axis=1)
    pairs = gram[np.triu_indices(n, k=1)]
    qs = (0, 5, 25, 50, 75, 95, 100)

    def pct(x: np.ndarray) -> dict[str, float]:
        return {f"p{q}": round(float(v), 4) for q, v in zip(qs, np.percentile(x, qs))}

    edges = np.linspace(0.0, 1.0, 11)
    hist, _ = np.histogram(np.clip(nn, 0.0, 1.0), bins=edges)
    out["nearest_neighbour"] = pct(nn)
    out["nearest_neighbour"]["mean"] = round(float(nn.mean()), 4)
    out["pairwise"] = pct(pairs)
    out["pairwise"]["mean"] = round(float(pairs.mean()), 4)
    out["nearest_neighbour_histogram"] = [
        {"from": round(float(lo), 1), "to": round(float(hi), 1), "count": int(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], hist)
    ]
    counts = greedy_keep_count(vectors, sorted(set(THRESHOLD_GRID) | {float(t) for t in thresholds}))
    out["kept_at_threshold"] = {f"{t:g}": counts[float(t)] for t in thresholds}
    out["threshold_for_keep_rate"] = {}
    for r in keep_rates:
        hit = [t for t in sorted(counts) if counts[t] >= r * n - 1e-9]
        out["threshold_for_keep_rate"][f"{r:g}"] = hit[0] if hit else None
    return out


def describe_filter(applied: bool, threshold: float, keep_rate: float | None = None,
                    thresholds: dict[str, float | None] | None = None) -> dict[str, Any]:
    """How a persona run filtered, in numbers and one sentence (``said``), for its
    summary and stats: ``unfiltered`` (an import with ``filter=false``),
    ``calibrated`` (``keep_rate``, with the threshold each pool got) or
    ``threshold`` (the fixed threshold)."""
    if not applied:
        return {"mode": "unfiltered", "said": "filter=false: every item kept but exact duplicates (the published "
                                              "pools were already filtered by their authors, with their embedder)"}
    if keep_rate is not None:
        given = thresholds or {}
        shown = ", ".join(f"{k} {t:.4f}" for k, t in given.items() if t is not None)
        return {"mode": "calibrated", "keep_rate": keep_rate, "thresholds": given,
                "said": f"calibrated: threshold per pool so that {keep_rate:.0%} of the reference items pass ({shown})"}
    return {"mode": "threshold", "threshold": threshold,
            "said": f"max cosine similarity <= {threshold} (the paper's rule, with this embedder)"}
