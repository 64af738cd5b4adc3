"""structlog, configured once at the entry point.

Console rendering on a TTY, JSON lines otherwise; ``merge_contextvars``
first so ``bound_contextvars(run_id=..., actor=..., tree_id=...)`` shows on
every line. Library loggers that could echo request headers (openai,
httpx2) are held at WARNING; what stdlib loggers do emit goes through the
same renderer (a JSON stream stays JSON lines).
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _terminal_safe_values(logger: object, name: str, event: dict) -> dict:
    """Console lines: every value printed as text is terminal-safe (a model's
    reply or a server's error may carry escape sequences)."""
    from ..core import terminal_safe

    return {k: terminal_safe(v) if isinstance(v, str) else v for k, v in event.items()}


def configure_logging(level: str = "INFO", fmt: str = "auto", stream=None) -> None:
    from ..core.errors import ConfigError

    level = str(level).upper()
    if level not in LEVELS:
        raise ConfigError("log.level", level, " | ".join(LEVELS))
    if fmt not in ("auto", "console", "json"):
        raise ConfigError("log.format", fmt, "auto | console | json")
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer = structlog.dev.ConsoleRenderer(colors=True) if fmt == "console" else structlog.processors.JSONRenderer()
    safe = [_terminal_safe_values] if fmt == "console" else []  # JSON lines escape controls themselves
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *safe,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # stdlib records (libraries) go through the same renderer: JSON lines stay JSON lines
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_aloe", False)]
    if not root.handlers:  # like basicConfig: leave handlers someone else installed (pytest) alone
        handler = logging.StreamHandler(stream)
        handler._aloe = True  # type: ignore[attr-defined]
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *safe, renderer],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
        ))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "sentence_transformers",
                 "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
