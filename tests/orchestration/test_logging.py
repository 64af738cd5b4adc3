"""Logging as configured by the CLI: JSON lines when not a TTY (with the
bound run/tree context on every line), the console renderer on a TTY,
level filtering, quiet library loggers, and one-line errors for bad values."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import structlog

from aloesim.core.errors import ConfigError
from aloesim.orchestration import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libs = {name: logging.getLogger(name).level for name in ("openai", "httpx2")}
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lib_level in libs.items():
        logging.getLogger(name).setLevel(lib_level)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_with_bound_context_when_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream=stream)
    log = structlog.get_logger("aloesim.test")
    with structlog.contextvars.bound_contextvars(run_id=3, tree_id=42):
        log.info("tree.done", nodes=10)
        with structlog.contextvars.bound_contextvars(actor="inducer", turn=2):
            log.warning("llm.retry", attempt=1)
    log.info("after")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    first, second, third = lines
    assert first["event"] == "tree.done" and first["nodes"] == 10 and first["level"] == "info"
    assert (first["run_id"], first["tree_id"]) == (3, 42) and "timestamp" in first
    assert (second["run_id"], second["tree_id"], second["actor"], second["turn"]) == (3, 42, "inducer", 2)
    assert second["level"] == "warning"
    assert "run_id" not in third and "tree_id" not in third


def test_level_filters() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "json", stream=stream)
    log = structlog.get_logger("aloesim.test")
    log.debug("hidden")
    log.info("hidden too")
    log.error("shown")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["shown"]


def test_console_renderer_on_a_tty() -> None:
    stream = FakeTTY()
    configure_logging("DEBUG", "auto", stream=stream)
    with structlog.contextvars.bound_contextvars(tree_id=7):
        structlog.get_logger("aloesim.test").debug("console.line")
    text = stream.getvalue()
    assert "console.line" in text and "tree_id" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_json_can_be_forced_on_a_tty() -> None:
    stream = FakeTTY()
    configure_logging("INFO", "json", stream=stream)
    structlog.get_logger("aloesim.test").info("forced")
    assert json.loads(stream.getvalue())["event"] == "forced"


def test_library_loggers_are_held_at_warning() -> None:
    configure_logging("DEBUG", "json", stream=io.StringIO())
    for name in ("openai", "httpx2"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


@pytest.mark.parametrize("level,fmt,key", [("LOUD", "auto", "log.level"), ("INFO", "xml", "log.format")])
def test_bad_values_are_config_errors(level: str, fmt: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging(level, fmt, stream=io.StringIO())
    assert info.value.key == key and "\n" not in str(info.value)


def test_auto_is_json_on_a_real_pipe() -> None:
    code = textwrap.dedent("""
        import structlog
        from aloesim.orchestration import configure_logging
        configure_logging("INFO", "auto")
        with structlog.contextvars.bound_contextvars(run_id=1, tree_id=2):
            structlog.get_logger("x").info("piped", ok=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stderr.strip().splitlines()[-1])
    assert (record["event"], record["run_id"], record["tree_id"], record["ok"]) == ("piped", 1, 2, True)


def test_library_warnings_are_json_lines_too() -> None:
    code = textwrap.dedent("""
        import logging
        import structlog
        from aloesim.orchestration import configure_logging
        configure_logging("INFO", "auto")
        with structlog.contextvars.bound_contextvars(run_id=5):
            logging.getLogger("openai").warning("library says %s", "careful")
            logging.getLogger("openai").info("held back")
            structlog.get_logger("x").info("ours")
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.strip().splitlines()]  # every line is JSON
    assert [r["event"] for r in records] == ["library says careful", "ours"]
    assert records[0]["level"] == "warning" and records[0]["logger"] == "openai" and records[0]["run_id"] == 5


def test_library_exceptions_are_one_json_record() -> None:
    code = textwrap.dedent("""
        import logging
        from aloesim.orchestration import configure_logging
        configure_logging("INFO", "json")
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("somelib").exception("it broke")
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    record = json.loads(lines[0])
    assert record["event"] == "it broke" and record["level"] == "error" and "ZeroDivisionError" in record["exception"]
