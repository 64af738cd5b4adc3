"""Reading user text files: what every reader of a user's file checks before
any of it is used, so a bad file is one ``InputError`` naming file:line:column
and nothing is created.

``decode_utf8`` turns the bytes into text (UTF-8, an optional BOM; UTF-16/32
and stray bytes are refused with where they are). ``refused_char`` names a
character no aloesim text may hold: a lone UTF-16 surrogate, a Unicode
noncharacter (U+FFFE, U+FFFF, U+FDD0-U+FDEF, ...), NUL or another control
character (tab, newline and carriage return are fine). ``check_json_line``
finds such a character in one line of JSON text, written raw or as an
escape (``"\\ud800"``, ``"\\u0000"``), and raises with its column.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import InputError

__all__ = ["check_json_line", "check_text_line", "decode_utf8", "refused_char"]

_OTHER_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"),
)
_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "/": "/"}
# a fast pre-check: any character that might be refused (the exact test is refused_char)
_SUSPECT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
                      "\U0001fffe-\U0001ffff\U0002fffe-\U0002ffff\U0003fffe-\U0003ffff\U0004fffe-\U0010ffff]"
                      r"|\\[ubf]")


def refused_char(ch: str) -> str | None:
    """Why ``ch`` (one character) may not appear in aloesim text, or None."""
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone UTF-16 surrogate (U+{code:04X})"
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
        return f"a Unicode noncharacter (U+{code:04X})"
    if code == 0:
        return "a NUL character (U+0000)"
    if (code < 0x20 and ch not in "\t\n\r") or 0x7F <= code <= 0x9F:
        return f"a control character (U+{code:04X})"
    return None


def decode_utf8(path: str | Path, raw: bytes) -> str:
    """``raw`` as text: UTF-8 (a leading BOM is kept for the caller to skip);
    anything else is an InputError with the line and column of the first bad byte."""
    for bom, name in _OTHER_BOMS:
        if raw.startswith(bom):
            raise InputError(str(path), f"the file is {name} text (byte-order mark {bom.hex(' ')}); save it as UTF-8",
                             1, 1)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        raise InputError(str(path), f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line, column) from None


def check_text_line(path: str | Path, line: str, lineno: int) -> None:
    """Raise InputError at the first refused character of a plain text line."""
    if _SUSPECT.search(line) is None:
        return
    for i, ch in enumerate(line):
        why = refused_char(ch)
        if why is not None:
            raise InputError(str(path), f"the text holds {why}", lineno, i + 1)


def check_json_line(path: str | Path, line: str, lineno: int) -> None:
    """Raise InputError at the first refused character of a line of valid JSON,
    whether written raw or as an escape sequence (a lone ``\\ud800``, ``\\u0000``,
    ``\\uffff``; a surrogate pair is one character and fine)."""
    if _SUSPECT.search(line) is None:
        return
    i = 0
    while i < len(line):
        ch, width = line[i], 1
        if ch == "\\":
            m = _ESCAPE.match(line, i)
            if m is None:  # not an escape JSON knows: the JSON parser reports it
                i += 1
                continue
            width = m.end() - i
            if m.group(2) is not None:
                ch = _SIMPLE[m.group(2)]
            else:
                code = int(m.group(1), 16)
                if 0xD800 <= code <= 0xDBFF:
                    low = _ESCAPE.match(line, m.end())
                    if low is not None and low.group(1) is not None and 0xDC00 <= int(low.group(1), 16) <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (int(low.group(1), 16) - 0xDC00)
                        width = low.end() - i
                ch = chr(code)
        why = refused_char(ch)
        if why is not None:
            written = "" if width == 1 else f" (written {line[i:i + width]})"
            raise InputError(str(path), f"the text holds {why}{written}", lineno, i + 1)
        i += width
