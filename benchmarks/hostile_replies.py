"""Hostile replies: every way an OpenAI-compatible server can answer badly,
for the latency server's fault modes (``--fault-mix hostile`` or any of
``HOSTILE_KINDS`` by name) and the reliability tests.

``HOSTILE_KINDS`` maps each kind to what a careful client does with it:
``accept`` (the reply is usable once made safe: a lone surrogate replaced, a
count clamped, a huge text capped), ``retry`` (there is no usable reply in it)
or ``fail`` (not worth retrying: a redirect, a 401). ``hostile_reply(kind,
completion, rng, ...)`` builds one as (status, headers, body bytes) from the
well-formed ``completion`` the server would have sent; ``fuzz_reply`` draws a
random one (seeded): a mutated completion, mutated or random bytes, random
JSON, random text, odd headers or status codes, or a named kind.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

__all__ = ["HOSTILE_KINDS", "fuzz_reply", "hostile_reply"]

HOSTILE_KINDS: dict[str, str] = {
    "surrogate": "accept",        # content holds a lone UTF-16 surrogate (a cut-off emoji)
    "controls": "accept",         # content holds NUL, terminal escapes, U+FFFE
    "usage_garbage": "accept",    # usage counts a string, negative, null
    "usage_huge": "accept",       # usage counts 10^30
    "wrong_ctype": "accept",      # a good completion served as text/html
    "parts": "accept",            # content as a list of text parts
    "length": "accept",           # finish_reason "length" (retried for structured output)
    "huge": "accept",             # a 2 MB content (capped by max_reply_chars)
    "content_number": "retry",    # content is 42
    "content_list": "retry",      # content is [1, 2]
    "content_object": "retry",    # content is {"text": ...}
    "choices_string": "retry",    # "choices": "oops"
    "choices_null": "retry",      # "choices": [null]
    "choices_empty": "retry",     # "choices": []
    "message_missing": "retry",   # choices[0] has no message
    "not_json": "retry",          # an HTML page with status 200
    "json_array": "retry",        # the body is a JSON list
    "json_scalar": "retry",       # the body is null
    "gzip_garbage": "retry",      # Content-Encoding: gzip on bytes that are not gzip
    "zero_body": "retry",         # status 200, 0 bytes
    "invalid_utf8": "retry",      # the body holds bytes that are not UTF-8
    "deep_json": "retry",         # JSON nested 100,000 deep
    "error_200": "retry",         # {"error": ...} with status 200
    "redirect": "fail",           # 302 to another origin
    "redirect_307": "fail",       # 307 to another origin (would re-send the prompt)
    "key_echo": "fail",           # 401 quoting a masked form of the API key
    "fuzz": "any",                # a random one of all of these and more (fuzz_reply)
}

_JSON = {"content-type": "application/json"}
_ODD_TEXT = ("\x00", "\x1b[2J", "\x1b]8;;http://evil.example\x07link\x1b]8;;\x07", "\ufffe", "\uffff", "\u202e",
             "\ud83d", "\udc00", "é", "漢字", "😀", "\r\n", "\t", "\x7f", "\x85", '"', "\\", "{", "}")


def _with_text(completion: dict[str, Any], structured: bool, extra: str) -> dict[str, Any]:
    """``completion`` with ``extra`` added to its text (for structured output: to
    the first string value inside the JSON, so the JSON stays valid)."""
    out = copy.deepcopy(completion)
    message = out["choices"][0]["message"]
    text = message["content"]
    if structured:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str):
                    value[key] = item + extra
                    break
            message["content"] = json.dumps(value)  # ensure_ascii: a lone surrogate becomes \\udXXX
            return out
    message["content"] = text + extra
    return out


def _dump(obj: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {**_JSON, **headers}, json.dumps(obj).encode()


def hostile_reply(kind: str, completion: dict[str, Any], rng: random.Random, *, structured: bool = False,
                  redirect_to: str = "http://127.0.0.1:9/elsewhere", api_key: str = "") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a ``kind`` reply built from ``completion``."""
    if kind == "fuzz":
        return fuzz_reply(completion, rng, structured=structured, redirect_to=redirect_to)
    c = copy.deepcopy(completion)
    choice = c["choices"][0]
    if kind == "surrogate":
        return _dump(_with_text(completion, structured, " \ud83d"))
    if kind == "controls":
        return _dump(_with_text(completion, structured, " \x00\x1b[2J\x1b]8;;http://evil.example\x07x\x1b]8;;\x07\ufffe"))
    if kind == "usage_garbage":
        c["usage"] = {"prompt_tokens": "many", "completion_tokens": -5, "total_tokens": None}
        return _dump(c)
    if kind == "usage_huge":
        c["usage"] = {"prompt_tokens": 10**30, "completion_tokens": 10**25, "total_tokens": 10**30 + 10**25}
        return _dump(c)
    if kind == "wrong_ctype":
        return 200, {"content-type": "text/html; charset=latin-1"}, json.dumps(c).encode()
    if kind == "parts":
        text = choice["message"]["content"]
        half = len(text) // 2
        choice["message"]["content"] = [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}]
        return _dump(c)
    if kind == "length":
        choice["finish_reason"] = "length"
        return _dump(c)
    if kind == "huge":
        return _dump(_with_text(completion, structured, " " + "very long reply " * 125_000))
    if kind.startswith("content_"):
        choice["message"]["content"] = {"content_number": 42, "content_list": [1, 2],
                                        "content_object": {"text": "hi"}}[kind]
        return _dump(c)
    if kind == "choices_string":
        c["choices"] = "oops"
        return _dump(c)
    if kind == "choices_null":
        c["choices"] = [None]
        return _dump(c)
    if kind == "choices_empty":
        c["choices"] = []
        return _dump(c)
    if kind == "message_missing":
        del choice["message"]
        return _dump(c)
    if kind == "not_json":
        return 200, {"content-type": "text/html"}, b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    if kind == "json_array":
        return 200, dict(_JSON), b"[1, 2, 3]"
    if kind == "json_scalar":
        return 200, dict(_JSON), b"null"
    if kind == "gzip_garbage":
        return 200, {**_JSON, "content-encoding": "gzip"}, b"\x1f\x8b\x08\x00this is not gzip at all" + bytes(32)
    if kind == "zero_body":
        return 200, dict(_JSON), b""
    if kind == "invalid_utf8":
        return 200, dict(_JSON), json.dumps(c).encode().replace(b'"content": "', b'"content": "caf\xe9 \xff\xfe ', 1)
    if kind == "deep_json":
        return 200, dict(_JSON), b"[" * 100_000 + b"]" * 100_000
    if kind == "error_200":
        return _dump({"error": {"message": "The server is overloaded (in a 200)", "type": "server_error"}})
    if kind in ("redirect", "redirect_307"):
        return (302 if kind == "redirect" else 307), {"location": redirect_to}, b""
    if kind == "key_echo":
        masked = f"{api_key[:8]}{'*' * 24}{api_key[-4:]}" if len(api_key) > 12 else "sk-****"
        message = f"Incorrect API key provided: {masked}. Your key ends in ...{api_key[-6:]}."
        body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
        return 401, dict(_JSON), json.dumps(body).encode()
    raise ValueError(f"unknown hostile kind {kind!r}")


# ----------------------------------------------------------------------------- fuzz


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.4:
            parts.append(rng.choice(("hello", "I think", "Sure!", "The answer is", "ok", " ", "\n")))
        elif roll < 0.8:
            parts.append(rng.choice(_ODD_TEXT))
        elif roll < 0.95:
            parts.append(chr(rng.randint(0, 0x10FFFF)))
        else:
            parts.append("z" * rng.randint(1000, 300_000))
    return "".join(parts)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.randint(0, 9 if depth < 4 else 6)
    if roll == 0:
        return None
    if roll == 1:
        return rng.random() < 0.5
    if roll == 2:
        return rng.choice((0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 7))
    if roll == 3:
        return rng.choice((0.5, -0.0, 1e308, -1e308, float("nan"), float("inf"), 3.0))
    if roll <= 6:
        return _random_text(rng)
    if roll <= 8:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_random_text(rng)[:20] or "k": _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


def _mutated(completion: dict[str, Any], rng: random.Random) -> Any:
    c: Any = copy.deepcopy(completion)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(c) if p]
        if not paths:
            return _random_value(rng)
        path = rng.choice(paths)
        parent = c
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = _random_value(rng)
    return c


def _dumps(value: Any, rng: random.Random) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    except (ValueError, RecursionError):
        text = "{}"
    return text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: bytes that are not UTF-8


def _byte_noise(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 5)):
        if not data:
            data += rng.randbytes(rng.randint(1, 8))
            continue
        at = rng.randrange(len(data))
        op = rng.randint(0, 3)
        if op == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        elif op == 2:
            del data[at:at + rng.randint(1, 16)]
        else:
            del data[at:]
    return bytes(data)


_STATUSES = (200, 200, 200, 201, 202, 203, 206, 400, 401, 403, 404, 409, 410, 413, 418, 422, 429, 500, 502, 503,
             504, 301, 302, 303, 307, 308)
_CTYPES = ("application/json", "text/html", "text/plain; charset=utf-16", "application/octet-stream", "",
           "application/json; charset=latin-1", "text/event-stream")


def fuzz_reply(completion: dict[str, Any], rng: random.Random, *, structured: bool = False,
               redirect_to: str = "http://127.0.0.1:9/elsewhere") -> tuple[int, dict[str, str], bytes]:
    """A random malformed answer (status, headers, body), seeded by ``rng``."""
    good = json.dumps(completion).encode()
    roll = rng.random()
    headers = dict(_JSON)
    status = 200
    if roll < 0.25:
        body = _dumps(_mutated(completion, rng), rng)
    elif roll < 0.40:
        body = _byte_noise(good, rng)
    elif roll < 0.48:
        body = rng.randbytes(rng.randint(0, 300))
    elif roll < 0.58:
        body = _dumps(_random_value(rng), rng)
    elif roll < 0.70:
        c = copy.deepcopy(completion)
        c["choices"][0]["message"]["content"] = _random_text(rng)
        body = _dumps(c, rng)
    elif roll < 0.78:
        body = good
        headers = {"content-type": rng.choice(_CTYPES)}
        if rng.random() < 0.5:
            headers["content-encoding"] = rng.choice(("gzip", "deflate", "br", "identity", "x-bogus"))
    elif roll < 0.86:
        status = rng.choice(_STATUSES)
        body = rng.choice((good, b"", b"{}", b"<html>oops</html>", _dumps(_random_value(rng), rng)))
        if 300 <= status < 400:
            headers["location"] = rng.choice((redirect_to, "/v1/chat/completions", "", "http://[::1"))
    else:
        kind = rng.choice([k for k in HOSTILE_KINDS if k not in ("fuzz", "key_echo")])
        return hostile_reply(kind, completion, rng, structured=structured, redirect_to=redirect_to)
    return status, headers, body
