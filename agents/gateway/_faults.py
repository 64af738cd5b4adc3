"""What the gateway makes of a failed attempt, and of text it did not write.

``Retryable`` is a fault worth another attempt (with what the server asked
for in ``Retry-After``); ``retry_after`` reads that header. ``redactor``
builds the function that scrubs the API key out of any text before it is
logged, recorded or raised: the key itself, the masked echoes servers print
(``sk-abcd****wxyz`` as OpenAI's 401 shows it, ``****wxyz``, ``sk-ab...``),
and any run of 8 or more of its characters. ``short`` fits text on one line.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

__all__ = ["RETRY_STATUS", "Retryable", "first_error", "redactor", "retry_after", "short"]

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MASKED = "[redacted]"
_MASK = re.compile(r"(?:[*•●·…#]{2,}|\.{3,}|x{4,}|X{4,})")
_WORD_BEFORE = re.compile(r"[\w\-]{1,64}$")
_WORD_AFTER = re.compile(r"[\w\-]{1,64}")
_FRAGMENT = 8  # this many characters of the key in a row are recognisable


class Retryable(Exception):
    """A failed attempt worth another one."""

    def __init__(self, reason: str, retry_after: float | None = None, endpoint_fault: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after
        self.endpoint_fault = endpoint_fault  # the endpoint failed (not the reply): route around it for a while


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` as
    seconds or an HTTP date); None when absent or unusable (then backoff decides)."""
    if headers is None:
        return None
    ms = _seconds(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # an HTTP date is GMT
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - time.time())


def _seconds(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "reply"
    return f"{where}: {err.get('msg', 'invalid')}"


def short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redactor(secret: str | None) -> Callable[[str], str]:
    """A function that replaces ``secret`` and every recognisable fragment of it
    in a text with ``[redacted]`` (identity when there is no secret)."""
    if not secret:
        return lambda text: text
    grams = sorted({secret[i:i + _FRAGMENT] for i in range(len(secret) - _FRAGMENT + 1)}) \
        if len(secret) >= 12 else []

    def masked_spans(text: str) -> list[tuple[int, int]]:
        spans = []
        for m in _MASK.finditer(text):
            start, end = m.start(), m.end()
            gap = int(start > 0 and text[start - 1] == " ")  # "sk-ab ... wxyz": one space may part them
            before = _WORD_BEFORE.search(text, max(0, start - gap - 64), start - gap)
            if before is not None:  # the longest tail of the word before that starts the key
                word = before.group()
                k = next((k for k in range(len(word), 2, -1) if secret.startswith(word[-k:])), 0)
                start -= k + gap if k else 0
            gap = int(text[end:end + 1] == " ")
            after = _WORD_AFTER.match(text, end + gap)
            if after is not None:  # the longest head of the word after that ends the key
                word = after.group()
                k = next((k for k in range(len(word), 3, -1) if secret.endswith(word[:k])), 0)
                end += k + gap if k else 0
            if (start, end) != (m.start(), m.end()):
                spans.append((start, end))
        return spans

    def fragment_spans(text: str) -> list[tuple[int, int]]:
        spans = []
        for gram in grams:
            at = text.find(gram)
            while at != -1:
                spans.append((at, at + len(gram)))
                at = text.find(gram, at + 1)
        return spans

    def redact(text: str) -> str:
        text = text.replace(secret, MASKED)
        spans = masked_spans(text) + fragment_spans(text)
        if not spans:
            return text
        spans.sort()
        out, pos = [], 0
        for start, end in spans:
            if end <= pos:
                continue
            if start > pos:
                out.append(text[pos:start])
                out.append(MASKED)
            elif not out or out[-1] != MASKED:
                out.append(MASKED)
            pos = max(pos, end)
        out.append(text[pos:])
        return "".join(out)

    return redact
