"""Text from models, files and the database, made safe to print on a terminal.

A reply, a persona or an error message may carry control sequences: ESC
sequences (CSI colour and cursor moves, OSC 8 hyperlinks, OSC 52 clipboard
writes, clear screen), single C1 controls (U+009B is a one-character CSI),
carriage returns and backspaces that overwrite what was printed, and bidi
overrides that reorder what a reader sees. ``terminal_safe`` turns every one
of them into something visible and inert: C0 controls become their Unicode
control pictures (``\\x1b`` prints as ``␛``), DEL prints as ``␡``, C1 controls
and bidi/invisible formatting characters print as their ``\\x9b`` /
``\\u202e`` escape. Newline and tab are kept. ``terminal_safe_data`` applies
it to every string inside a view (dataclasses, dicts, lists, tuples);
``json_safe`` escapes the same characters inside an already serialized JSON
text, which keeps the data exactly (``json.dumps`` escapes C0 itself).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

__all__ = ["UNSAFE", "json_safe", "terminal_safe", "terminal_safe_data"]

T = TypeVar("T")

_BIDI_AND_INVISIBLE = (
    [0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF]
    + list(range(0x202A, 0x202F))  # LRE RLE PDF LRO RLO
    + list(range(0x2066, 0x206A))  # LRI RLI FSI PDI
)

UNSAFE: frozenset[int] = frozenset(
    [c for c in range(0x20) if c not in (0x09, 0x0A)] + [0x7F] + list(range(0x80, 0xA0)) + _BIDI_AND_INVISIBLE
)
"""Code points ``terminal_safe`` never lets through as themselves."""

_TERMINAL = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)}
_TERMINAL[0x7F] = "\u2421"
_TERMINAL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
_TERMINAL.update({c: f"\\u{c:04x}" for c in _BIDI_AND_INVISIBLE})

_JSON = {c: f"\\u{c:04x}" for c in UNSAFE if c >= 0x7F}


def terminal_safe(text: str) -> str:
    """``text`` with every control, escape and bidi character shown visibly
    (newlines and tabs kept)."""
    return text.translate(_TERMINAL)


def json_safe(text: str) -> str:
    """A serialized JSON text with DEL, C1 and bidi characters written as
    ``\\uXXXX`` escapes: the same JSON value, safe to print."""
    return text.translate(_JSON)


def terminal_safe_data(value: T) -> T:
    """A copy of ``value`` with ``terminal_safe`` applied to every string in it
    (dataclass fields, dict keys and values, list and tuple items)."""
    if isinstance(value, str):
        return terminal_safe(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {terminal_safe_data(k): terminal_safe_data(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [terminal_safe_data(v) for v in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        items = [terminal_safe_data(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: terminal_safe_data(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value
