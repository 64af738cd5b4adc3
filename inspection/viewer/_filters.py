"""The template filters of the viewer: times, durations, numbers, dollars, JSON, short
previews, and ``cap`` (one text at most ``MAX_TEXT`` characters, with a
marker and a link to the full text)."""

from __future__ import annotations

import json
import time
from typing import Any

from markupsafe import Markup, escape

from aloesim.environment.store import dollars_text

__all__ = ["MAX_TEXT", "cap", "dollars", "num", "pretty", "secs", "short", "when"]

MAX_TEXT = 20_000  # characters of one text (reply, prompt, persona, error) a page renders


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def secs(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f}s"


def num(n: Any) -> str:
    return "-" if n is None else f"{n:,}" if isinstance(n, int) else str(n)


def dollars(x: Any) -> str:
    """The dollars of anything with ``cost_usd`` and ``unpriced`` (a run, a role, a model): "unknown", never $0,
    where no price is known."""
    return dollars_text(x.cost_usd, x.unpriced)


def pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2)


def short(text: str | None, n: int = 140) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


def cap(text: Any, full: str | None = None, limit: int = MAX_TEXT) -> Any:
    """``text`` up to ``limit`` characters; past that, a marker saying how much
    is not shown and linking to ``full`` (the whole view as JSON)."""
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text  # autoescaped by the template
    marker = f"… {len(text) - limit:,} more characters not shown (of {len(text):,})"
    link = f' · <a class="full-text" href="{escape(full)}">full text</a>' if full else ""
    return Markup(f'{escape(text[:limit])}<span class="capped">{escape(marker)}{link}</span>')
