"""Values made safe where they are produced, before anything stores,
serializes or prints them: text with no lone UTF-16 surrogate (SQLite, JSON
encoders and terminals all reject one), counts clamped into a sane integer
range (SQLite integers overflow past 2^63), plain JSON data with no NaN.

A server's odd value is stored in its safe form, never fatal: a cut-off emoji
becomes U+FFFD, ``usage.prompt_tokens = 1e30`` becomes ``MAX_COUNT``, a
non-numeric count becomes 0.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["MAX_COUNT", "plain_json", "safe_count", "safe_seconds", "safe_text"]

MAX_COUNT = 1_000_000_000  # no single call has a billion tokens; sums of millions of calls still fit in 2^63
_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (valid UTF-8 from here on)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def safe_count(value: Any, maximum: int = MAX_COUNT) -> int:
    """A token count as an int in [0, maximum]: numbers are clamped (infinity is
    the maximum), digit strings are read, anything else is 0."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):  # a sign, a point or other digits: not a count
            return 0
        value = int(value) if len(value) < 40 else maximum
    if isinstance(value, float):
        if math.isnan(value):
            return 0
        if math.isinf(value):
            return maximum if value > 0 else 0
        value = int(value)
    if isinstance(value, int):
        return min(max(value, 0), maximum)
    return 0


def safe_seconds(value: Any) -> float | None:
    """A duration as a finite float >= 0, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def plain_json(value: Any, depth: int = 0, *, max_depth: int = 32) -> Any:
    """``value`` as plain JSON data fit to store: strings made safe, non-finite
    floats and anything deeper than ``max_depth`` (or not JSON) as None."""
    if depth > max_depth:
        return None
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, list):
        return [plain_json(v, depth + 1, max_depth=max_depth) for v in value]
    if isinstance(value, dict):
        return {safe_text(str(k)): plain_json(v, depth + 1, max_depth=max_depth) for k, v in value.items()}
    return None
