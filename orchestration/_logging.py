"""structlog, configured once at the entry point.

Console rendering on a TTY, JSON lines otherwise; ``merge_contextvars``
first so ``bound_contextvars(run_id=..., actor=..., tree_id=...)`` shows on
every line. Library loggers that could echo request headers (openai,
httpx2) are held at WARNING.
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(level: str = "INFO", fmt: str = "auto", stream=None) -> None:
    from ..environment.errors import ConfigError

    level = str(level).upper()
    if level not in LEVELS:
        raise ConfigError("log.level", level, " | ".join(LEVELS))
    if fmt not in ("auto", "console", "json"):
        raise ConfigError("log.format", fmt, "auto | console | json")
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer = structlog.dev.ConsoleRenderer(colors=True) if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=stream)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "sentence_transformers",
                 "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
