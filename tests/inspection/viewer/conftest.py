"""Fixtures of the viewer tests: the hand-built sample database and the
viewer serving it with uvicorn on a free 127.0.0.1 port in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aloesim.inspection.viewer import create_app, serve_in_thread
from tests.support.sample_db import write_sample


@dataclass
class Sample:
    path: Path
    ids: dict[str, int]


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    path = tmp_path_factory.mktemp("viewer") / "sample.db"
    return Sample(path, write_sample(path))


@pytest.fixture(scope="session")
def viewer_url(sample: Sample) -> Iterator[str]:
    with serve_in_thread(create_app(sample.path)) as url:
        yield url


@pytest.fixture(scope="session")
def small_pages_url(sample: Sample) -> Iterator[str]:
    """The same database with one row per page, so every pager link is exercised."""
    with serve_in_thread(create_app(sample.path, page_size=1)) as url:
        yield url
