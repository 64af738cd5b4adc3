"""Fixtures of the persona-pool tests."""

from __future__ import annotations

import os

import pytest
from persona_fakes import HashEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def minilm():
    """The real bundled all-MiniLM-L6-v2 (loaded once per session)."""
    from aloesim.environment.personas import SentenceEmbedder

    return SentenceEmbedder()
