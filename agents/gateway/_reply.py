"""A server's answer, read defensively: raw bytes -> a validated ``Reply``.

This is the one place a chat completion body is trusted, and it trusts
nothing: the body must be UTF-8 JSON holding an object whose
``choices[0].message.content`` is a string (or text parts); anything else
(zero bytes, HTML, a JSON list, ``choices`` a string or ``[null]``, no
``message``, content that is a number, a list or an object, invalid UTF-8,
JSON nested past the parser's depth) is a ``MalformedReply``, which the
gateway retries like any other fault. What it lets through is made safe to
store and print: lone UTF-16 surrogates in the text become U+FFFD,
``usage`` counts are clamped ints (a non-numeric or negative count is 0, a
huge one ``MAX_COUNT``), ``finish_reason`` is a short string or None, and
``choices[0].logprobs`` is carried as plain JSON data when the server sent
it (the judge's score distributions use it). A text longer than
``max_chars`` is cut there and marked ``finish_reason = "length"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...core import plain_json, safe_count, safe_text

__all__ = ["MalformedReply", "Reply", "parse_reply"]

_BOM = b"\xef\xbb\xbf"


class MalformedReply(Exception):
    """The body is not a chat completion we can use (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reply:
    """What a chat completion said, validated and safe."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: Any = None  # choices[0].logprobs as plain JSON data, when present
    cut_chars: int = 0  # characters dropped by max_chars (0 = the whole text was kept)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""  # no text (a refusal, a tool call): the gateway retries it as an empty reply
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") in ("text", "output_text") and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)  # the parts form some servers send
    raise MalformedReply(f"choices[0].message.content is {_kind(content)}, not text")


def parse_reply(body: bytes, *, max_chars: int | None = None) -> Reply:
    """The ``Reply`` in a chat completion body; ``MalformedReply`` when there is none."""
    if not body:
        raise MalformedReply("empty body (0 bytes)")
    body = body.removeprefix(_BOM)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedReply(f"body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise MalformedReply(f"body is not JSON ({detail}): {safe_text(text[:60])!r}") from None
    if not isinstance(data, dict):
        raise MalformedReply(f"body is {_kind(data)}, not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            raise MalformedReply(f"an error in a 200 reply: {safe_text(error['message'])}")
        raise MalformedReply(f"'choices' is {_kind(choices) if choices != [] else 'an empty list'}, not a list of choices")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise MalformedReply(f"choices[0] is {_kind(choice)}, not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedReply("choices[0].message is missing" if message is None
                             else f"choices[0].message is {_kind(message)}, not an object")
    content = safe_text(_content(message))
    finish = choice.get("finish_reason")
    finish = safe_text(finish)[:40] if isinstance(finish, str) and finish else None
    cut = 0
    if max_chars is not None and len(content) > max_chars:
        cut = len(content) - max_chars
        content, finish = content[:max_chars], "length"
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    logprobs = choice.get("logprobs")
    return Reply(
        text=content,
        finish_reason=finish,
        prompt_tokens=safe_count(usage.get("prompt_tokens")),
        completion_tokens=safe_count(usage.get("completion_tokens")),
        logprobs=plain_json(logprobs) if isinstance(logprobs, (dict, list)) else None,
        cut_chars=cut,
    )
