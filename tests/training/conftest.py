"""Fixtures of the training tests: a real SQLite file with hand-built trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.training_trees import build_db

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tree_db(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    db = tmp_path / "trees.db"
    return db, build_db(db)
