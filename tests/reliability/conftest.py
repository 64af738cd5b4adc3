"""Fixtures of the reliability tests (issue 7): the fault-injecting latency
server (benchmarks/latency_server.py), one per module. The helpers (``aloe``
as a subprocess, seeded databases, the checks every database must pass) are
``tests.support.reliability``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _common import ServerProcess, latency_server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A latency server for the module (no faults unless a test configures them)."""
    with latency_server(latency=0.02, seed=7, retry_after=0.2, hang=30) as s:
        yield s


@pytest.fixture
def clean_server(server: ServerProcess) -> ServerProcess:
    """The module's server with counters zeroed and faults off."""
    server.configure(fault_rate=0.0, latency=0.02, seed=7, reset=True)
    return server
