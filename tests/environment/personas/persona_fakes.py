"""Embedders with known vectors for the persona-pool tests."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np


class DictEmbedder:
    """Vectors given by hand: text -> vector (normalised on the way out)."""

    def __init__(self, table: Mapping[str, Sequence[float]], name: str = "dict-test") -> None:
        self.table, self.name = dict(table), name
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        dim = len(next(iter(self.table.values())))
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        v = np.array([self.table[t] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class HashEmbedder:
    """A pseudo-random unit vector per text (stable across runs). In 256
    dimensions two different texts have similarity ~0 +- 0.06, so only exact
    repeats (similarity 1) are filtered at threshold 0.6. Texts starting with
    'near:' get the vector of the rest of the text, nudged (similarity ~0.995)."""

    def __init__(self, dim: int = 256, name: str = "hash-test") -> None:
        self.dim, self.name = dim, name
        self.encoded = 0

    def _vec(self, text: str) -> np.ndarray:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
        return np.random.default_rng(seed).standard_normal(self.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += len(texts)
        rows = []
        for t in texts:
            if t.startswith("near:"):
                v = self._vec(t[5:]) + 0.1 * self._vec(t)
            else:
                v = self._vec(t)
            rows.append(v)
        v = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
