"""A fake OpenAI-compatible chat server with injected latency and faults.

It is what the benchmarks and the reliability tests talk to instead of a real
model: a real HTTP server (Starlette on uvicorn, 127.0.0.1) that answers

- ``GET /v1/models``: one model, ``--model`` (default ``latency-server``);
- ``POST /v1/chat/completions``: after ``--latency`` seconds (``asyncio.sleep``,
  never blocking the loop) a plausible reply with ``usage`` token counts. A
  plain request gets one to three conversational sentences picked by a hash of
  the request body and ``--seed`` (same body, same reply). A structured
  request (``response_format`` ``{"type": "json_object", "schema": S}`` as
  llama.cpp takes it, ``{"type": "json_schema", "json_schema": {"schema": S}}``
  as OpenAI/vLLM take it, or vLLM's ``guided_json: S``) gets a JSON object that
  validates against ``S`` (see ``instance_for``);
- ``GET /stats``: counters as JSON (requests, replies, faults by kind, in
  flight, peak in flight, server CPU seconds); ``/stats?log=1`` adds the last
  decisions, one ``[body digest, attempt, fault kind or null]`` per request;
- ``POST /config``: change latency / faults / seed at run time (JSON object
  with any of the ``ServerConfig`` fields, plus ``"reset": true`` to zero the
  counters), so one server can serve many test cases.

Fault mode (``--fault-rate R`` with ``--fault-mix``): each chat request is
faulty with probability R, the kind drawn by weight from the mix
(``FAULT_KINDS``): ``429`` (with ``Retry-After``), ``500``, ``503``, ``hang``
(answers nothing until the client gives up, or after ``--hang`` seconds),
``disconnect`` (headers and half the body, then the connection is closed),
``malformed`` (status 200 with a truncated JSON body), ``empty`` (a valid
completion whose message content is ``""``) and ``bad_schema`` (a structured
request answered with JSON that does not match its schema; only drawn for
structured requests). The draw is a hash of (seed, request body, how many
times this body was seen before): deterministic for a seed whatever the
arrival order, and a retry of the same body gets a fresh draw.

Hostile mode: the mix may also name the kinds of ``hostile_replies.HOSTILE_KINDS``
(``hostile`` = all of them): replies with a lone surrogate, usage of 10^30,
``choices`` a string, HTML or zero bytes with status 200, gzip garbage,
JSON nested 100,000 deep, a 302/307 to ``--redirect-to`` (another origin),
a 401 echoing the key masked, random mutations (``fuzz``), ... (``all``
stays the classic kinds above).

Budget mode (``--rpm`` and/or ``--tpm``, ``--burst``, ``--no-rate-headers``):
a hidden rate limit, two token buckets charged when a request arrives (one
request; the prompt + completion tokens of its reply) and refilled
continuously, each holding ``burst`` seconds of its budget. A request they
cannot pay gets a 429 at once (no latency), with ``retry-after-ms`` and
OpenAI's ``x-ratelimit-limit|remaining|reset-requests|tokens`` unless headers
are off; every admitted reply carries the ``x-ratelimit-*`` headers too.
``/stats`` counts ``admitted``, ``admitted_tokens`` and ``refused``.

Run it: ``python benchmarks/latency_server.py --port 8000 --latency 0.05
--fault-rate 0.2 --fault-mix 429=2,500,hang --seed 1``. With ``--port 0`` it
picks a free port; either way the first line on stdout is ``PORT <n>``.
Import it (pyproject's pytest ``pythonpath`` puts ``benchmarks/`` on ``sys.path``): ``ServerConfig``, ``Budget``,
``build_app``, ``instance_for``, ``violation_for``, ``serve_in_thread``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import resource
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

try:
    from hostile_replies import HOSTILE_KINDS, hostile_reply
except ImportError:  # imported as benchmarks.latency_server
    from .hostile_replies import HOSTILE_KINDS, hostile_reply

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "Budget",
    "ServerConfig",
    "build_app",
    "instance_for",
    "main",
    "parse_fault_mix",
    "serve_in_thread",
    "violation_for",
]

FAULT_KINDS = ("429", "500", "503", "hang", "disconnect", "malformed", "empty", "bad_schema")

_SENTENCES = (
    "That sounds like a lovely plan.",
    "I think the best place to start is with what you enjoy most.",
    "Could you tell me a bit more about what you have in mind?",
    "Many people find that a short daily routine makes a big difference.",
    "It depends on your budget, but there are good options at every level.",
    "I would suggest trying it for a week and seeing how it feels.",
    "That is a great question, and the answer has a few parts.",
    "Honestly, I have mixed feelings about that.",
    "You might enjoy a quieter neighbourhood with a few good cafes.",
    "If you like hiking, the coastal trails are worth a visit in spring.",
    "A simple recipe with fresh vegetables is usually the quickest win.",
    "I see why that would be frustrating after a long day.",
    "Let me know if you would like a step-by-step version.",
    "Reading a few pages before bed can help you wind down.",
    "The main trade-off is time against cost.",
    "I love that idea, especially the part about learning something new.",
    "My weekend was mostly spent in the garden, which I really enjoy.",
    "Working from home has its perks, but I miss the chats with colleagues.",
    "I am not sure yet, I am still weighing the options.",
    "Thanks, that actually helps a lot.",
    "Could you suggest something a little more adventurous?",
    "I usually prefer practical advice over long explanations.",
    "Music has always been my way to relax after work.",
    "Travelling with kids takes some planning, but it is worth it.",
)
_PROFILES = (
    "A retired teacher living by the sea who volunteers at the local library.",
    "A software engineer in her thirties who loves trail running.",
    "A university student studying biology and working part-time in a cafe.",
    "A father of two who runs a small bakery in the city centre.",
    "A nurse on night shifts who paints watercolours on weekends.",
)
_TRAITS = (
    "Curious, patient and a little sceptical.",
    "Warm, talkative and quick to laugh.",
    "Reserved, precise and detail-oriented.",
    "Energetic, optimistic and adventurous.",
    "Thoughtful, direct and pragmatic.",
)


# --------------------------------------------------------------------------- config


def parse_fault_mix(text: str | dict[str, float] | None) -> dict[str, float]:
    """``"429=2,500,hang"`` -> ``{"429": 2.0, "500": 1.0, "hang": 1.0}``;
    ``None``/``""``/``"all"`` -> every classic kind with weight 1; ``"hostile"``
    -> every hostile kind (``HOSTILE_KINDS``) with weight 1."""
    if text is None or text == "" or text == "all":
        return {kind: 1.0 for kind in FAULT_KINDS}
    if text == "hostile":
        return {kind: 1.0 for kind in HOSTILE_KINDS}
    if isinstance(text, dict):
        items = [(str(k), float(v)) for k, v in text.items()]
    else:
        items = []
        for part in text.split(","):
            name, _, weight = part.strip().partition("=")
            items.append((name.strip(), float(weight) if weight else 1.0))
    mix: dict[str, float] = {}
    for name, weight in items:
        if name not in FAULT_KINDS and name not in HOSTILE_KINDS:
            raise ValueError(f"fault kind {name!r} unknown; allowed: {', '.join((*FAULT_KINDS, *HOSTILE_KINDS))}")
        if weight < 0:
            raise ValueError(f"fault weight for {name!r} is {weight}; must be >= 0")
        mix[name] = weight
    if not any(mix.values()):
        raise ValueError("fault mix has no positive weight")
    return mix


@dataclass
class ServerConfig:
    """How the server behaves; every field can also be changed at run time
    through ``POST /config``."""

    latency: float = 0.05  # seconds slept before every answer
    fault_rate: float = 0.0  # probability that a chat request is faulty, in [0, 1]
    fault_mix: dict[str, float] = field(default_factory=lambda: parse_fault_mix(None))  # kind -> weight
    seed: int = 0  # seeds replies and fault draws
    retry_after: float = 1.0  # seconds sent in the Retry-After header of a 429
    hang: float = 300.0  # seconds a "hang" fault waits before answering (unless the client leaves first)
    model: str = "latency-server"  # the model id listed by /v1/models
    redirect_to: str = "http://127.0.0.1:9/elsewhere"  # where the "redirect" kinds point (another origin)
    log_size: int = 100_000  # decisions kept for /stats?log=1
    rpm: float = 0.0  # hidden requests-per-minute budget (429 beyond it); 0 = none
    tpm: float = 0.0  # hidden tokens-per-minute budget (prompt + completion tokens of each reply); 0 = none
    burst: float = 1.0  # seconds of the budget the server's buckets hold (OpenAI's: 60)
    rate_headers: bool = True  # send x-ratelimit-* on every reply and retry-after-ms on a budget 429

    def __post_init__(self) -> None:
        self.fault_mix = parse_fault_mix(self.fault_mix)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate is {self.fault_rate}; must be in [0, 1]")
        if self.latency < 0 or self.hang < 0 or self.retry_after < 0:
            raise ValueError("latency, hang and retry_after must be >= 0")
        if self.rpm < 0 or self.tpm < 0 or self.burst <= 0:
            raise ValueError("rpm and tpm must be >= 0 and burst > 0")

    def updated(self, changes: dict[str, Any]) -> ServerConfig:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(known)}")
        return ServerConfig(**{**asdict(self), **changes})


# --------------------------------------------------------------------------- schemas


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (``#/$defs/X``, ``#/definitions/X``) and merge ``allOf``."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 32:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            if part:
                target = target[part.replace("~1", "/").replace("~0", "~")]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **extra}
        seen += 1
    if not isinstance(schema, dict):
        return {}
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted(set(merged.get("required", [])) | set(value))
                else:
                    merged.setdefault(key, value)
        schema = merged
    return schema


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, list):
        return list(t)
    if isinstance(t, str):
        return [t]
    if "properties" in schema:
        return ["object"]
    if "items" in schema or "prefixItems" in schema:
        return ["array"]
    return []


def _text_for(name: str, rng: random.Random) -> str:
    lowered = name.lower()
    if "personalit" in lowered or "trait" in lowered:
        return rng.choice(_TRAITS)
    if "profile" in lowered or "persona" in lowered:
        return rng.choice(_PROFILES)
    return rng.choice(_SENTENCES)


def _string(schema: dict[str, Any], name: str, rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        text = "2024-01-01T12:00:00Z"
    elif fmt == "date":
        text = "2024-01-01"
    elif fmt == "email":
        text = "user@example.com"
    elif fmt in ("uri", "url"):
        text = "https://example.com/"
    elif fmt == "uuid":
        text = "00000000-0000-4000-8000-000000000000"
    elif "pattern" in schema:
        text = _matching(schema["pattern"], rng) or _text_for(name, rng)
    else:
        text = _text_for(name, rng)
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(text) < low:
        text = text.ljust(low, ".")
    if high is not None:
        text = text[: int(high)]
    return text


def _sample_regex(items: Any, rng: random.Random, depth: int = 0) -> str:
    """A string generated from a parsed regex (``re._parser``): literals, classes,
    categories, alternation, groups and repeats (minimum count, at least one)."""
    from re import _constants as c  # type: ignore[attr-defined]

    out = []
    for op, arg in items:
        if op is c.LITERAL:
            out.append(chr(arg))
        elif op is c.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op is c.ANY:
            out.append("a")
        elif op is c.IN:
            choices: list[str] = []
            negate = False
            for sub_op, sub_arg in arg:
                if sub_op is c.NEGATE:
                    negate = True
                elif sub_op is c.LITERAL:
                    choices.append(chr(sub_arg))
                elif sub_op is c.RANGE:
                    choices.extend(chr(x) for x in range(sub_arg[0], min(sub_arg[1], sub_arg[0] + 25) + 1))
                elif sub_op is c.CATEGORY:
                    choices.extend(_CATEGORY_CHARS.get(str(sub_arg), "a"))
            if negate:
                choices = [ch for ch in "aZ0 _-" if ch not in choices]
            out.append(rng.choice(choices or ["a"]))
        elif op is c.CATEGORY:
            out.append(rng.choice(_CATEGORY_CHARS.get(str(arg), "a")))
        elif op is c.BRANCH:
            out.append(_sample_regex(rng.choice(arg[1]), rng, depth + 1))
        elif op is c.SUBPATTERN:
            out.append(_sample_regex(arg[-1], rng, depth + 1))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            low, high, sub = arg
            count = max(low, 1) if high != 0 else 0
            count = min(count, high) if high is not c.MAXREPEAT else count
            out.extend(_sample_regex(sub, rng, depth + 1) for _ in range(count))
        # AT (anchors), lookarounds and the rest add nothing
    return "".join(out)


_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_WORD": "abcdefghijklmnopqrstuvwxyz",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_DIGIT": "abc",
    "CATEGORY_NOT_WORD": "-. ",
    "CATEGORY_NOT_SPACE": "abc",
}


def _matching(pattern: str, rng: random.Random) -> str | None:
    """A string matching ``pattern`` (``re.search``), or None when the simple
    sampler cannot produce one."""
    import re
    from re import _parser  # type: ignore[attr-defined]

    try:
        text = _sample_regex(_parser.parse(pattern), rng)
        return text if re.search(pattern, text) else None
    except (re.error, ValueError, TypeError, RecursionError):
        return None


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        ex = schema["exclusiveMinimum"]
        low = (ex + 1 if integer else ex + 1e-6) if low is None else max(low, ex + (1 if integer else 1e-6))
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        ex = schema["exclusiveMaximum"]
        high = (ex - 1 if integer else ex - 1e-6) if high is None else min(high, ex - (1 if integer else 1e-6))
    if low is None and high is None:
        low, high = 0, 10
    elif low is None:
        low = high - 10
    elif high is None:
        high = low + 10
    if integer:
        lo, hi = math.ceil(low), math.floor(high)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            candidates = [v for v in range(lo, hi + 1) if v % step == 0] or [lo]
            return rng.choice(candidates[:1000])
        return rng.randint(lo, hi) if hi >= lo else lo
    return round(rng.uniform(float(low), float(high)), 3)


def instance_for(schema: Any, rng: random.Random | None = None, *, root: dict[str, Any] | None = None,
                 name: str = "", depth: int = 0) -> Any:
    """A small JSON value that validates against ``schema``: every property of an
    object (required or not), strings of plausible text within length limits,
    numbers within bounds, an enum member or the const, strings matching a simple
    ``pattern``, the first non-null branch of ``anyOf``/``oneOf``/type lists
    (null one time in five where allowed), arrays of ``minItems`` (at least
    one) items. Covers what pydantic's ``model_json_schema`` emits."""
    rng = rng or random.Random(0)
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [_resolve(b, root) for b in schema[key]]
            non_null = [b for b in branches if _types(b) != ["null"]] or branches
            if len(non_null) < len(branches) and rng.random() < 0.2:
                return None  # nullable: sometimes "nothing revealed"
            base = {k: v for k, v in schema.items() if k not in (key, "type")}
            return instance_for({**non_null[0], **base}, rng, root=root, name=name, depth=depth + 1)
    types = [t for t in _types(schema) if t != "null"] or _types(schema) or ["string"]
    if "null" in _types(schema) and len(_types(schema)) > 1 and rng.random() < 0.2:
        return None
    kind = types[0]
    if kind == "object":
        props = schema.get("properties", {})
        out = {key: instance_for(sub, rng, root=root, name=key, depth=depth + 1) for key, sub in props.items()}
        for key in schema.get("required", []):
            out.setdefault(key, _text_for(key, rng))
        return out
    if kind == "array":
        prefix = schema.get("prefixItems", [])
        count = max(int(schema.get("minItems", 1)), len(prefix))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items", {})
        return [
            instance_for(prefix[i] if i < len(prefix) else items, rng, root=root, name=name, depth=depth + 1)
            for i in range(count)
        ]
    if kind == "string":
        return _string(schema, name, rng)
    if kind == "integer":
        return _number(schema, rng, integer=True)
    if kind == "number":
        return _number(schema, rng, integer=False)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def _allowed_types(schema: Any, root: dict[str, Any], depth: int = 0) -> set[str] | None:
    """JSON types a value may have under ``schema``; ``None`` = unconstrained."""
    schema = _resolve(schema, root)
    if depth > 16:
        return None
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        return {_json_type(v) for v in values} | ({"number"} if any(_json_type(v) == "integer" for v in values) else set())
    for key in ("anyOf", "oneOf"):
        if key in schema:
            out: set[str] = set()
            for branch in schema[key]:
                sub = _allowed_types(branch, root, depth + 1)
                if sub is None:
                    return None
                out |= sub
            return out
    types = set(_types(schema))
    if not types:
        return None
    if "number" in types:
        types.add("integer")
    return types


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_WRONG_VALUES: tuple[tuple[str, Any], ...] = (
    ("string", "not-a-valid-value"),
    ("integer", 12345),
    ("boolean", True),
    ("array", ["unexpected"]),
    ("object", {"unexpected": 1}),
)


def _wrong_value(allowed: set[str]) -> tuple[bool, Any]:
    for kind, value in _WRONG_VALUES:
        if kind not in allowed and not (kind == "integer" and "number" in allowed):
            return True, value
    return False, None


def violation_for(schema: Any) -> Any:
    """A JSON value that does NOT validate against ``schema``: an object whose
    properties all have a wrong type where the schema constrains them (a judge
    gets ``{"score": "not-a-valid-value"}``), else a value of a wrong type."""
    root = schema if isinstance(schema, dict) else {}
    resolved = _resolve(schema, root)
    allowed = _allowed_types(resolved, root)
    props = resolved.get("properties", {}) if allowed and allowed <= {"object"} else {}
    out: dict[str, Any] = {}
    for key, sub in props.items():
        sub_allowed = _allowed_types(sub, root)
        if sub_allowed is not None:
            ok, value = _wrong_value(sub_allowed)
            if ok:
                out[key] = value
    if out:
        return out
    if allowed is None:  # unconstrained at the top: only "not" could fail; say something non-JSON-ish
        return {"unexpected": "reply does not follow the schema"}
    return _wrong_value(allowed)[1]


def _schema_of(req: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """(structured?, schema) of a chat request in any of the three dialects."""
    fmt = req.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_object":
            schema = fmt.get("schema")
            return True, schema if isinstance(schema, dict) else None
        if kind == "json_schema":
            inner = fmt.get("json_schema") or {}
            schema = inner.get("schema") if isinstance(inner, dict) else None
            return True, schema if isinstance(schema, dict) else None
    guided = req.get("guided_json")
    if isinstance(guided, dict):
        return True, guided
    if isinstance(guided, str):
        try:
            return True, json.loads(guided)
        except ValueError:
            return True, None
    return False, None


# --------------------------------------------------------------------------- the server


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": str(status)}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class _HalfBody(Response):
    """Sends headers announcing the full body, half of it, then returns so that
    uvicorn closes the connection (the 'disconnect' fault)."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})


class _QuietHalfBody(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class Budget:
    """The hidden rate limit (``rpm``/``tpm``): two token buckets refilled
    continuously, each holding ``burst`` seconds of its budget, charged when a
    request arrives (a request the buckets cannot pay is refused with a 429).
    ``headers`` are OpenAI's ``x-ratelimit-*`` (reset = seconds until full)."""

    def __init__(self, rpm: float, tpm: float, burst: float) -> None:
        self.rpm, self.tpm, self.burst = rpm, tpm, burst
        self.requests = rpm / 60.0 * burst
        self.tokens = tpm / 60.0 * burst
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed, self._stamp = now - self._stamp, now
        if self.rpm:
            self.requests = min(self.rpm / 60.0 * self.burst, self.requests + elapsed * self.rpm / 60.0)
        if self.tpm:
            self.tokens = min(self.tpm / 60.0 * self.burst, self.tokens + elapsed * self.tpm / 60.0)

    def take(self, tokens: int) -> float | None:
        """Charge one request of ``tokens``; None when admitted, else the seconds until it would be."""
        self._refill()
        wait = 0.0
        if self.rpm and self.requests < 1:
            wait = (1 - self.requests) / (self.rpm / 60.0)
        need = min(tokens, self.tpm / 60.0 * self.burst)
        if self.tpm and self.tokens < need:
            wait = max(wait, (need - self.tokens) / (self.tpm / 60.0))
        if wait > 0:
            return wait
        if self.rpm:
            self.requests -= 1
        if self.tpm:
            self.tokens -= tokens
        return None

    def levels(self) -> dict[str, float]:
        """What the buckets hold now (requests, tokens): admitted at once, on top of the refill."""
        self._refill()
        return {"requests": self.requests, "tokens": self.tokens}

    def headers(self, retry_after: float | None = None) -> dict[str, str]:
        out = {}
        for name, per_min, level in (("requests", self.rpm, self.requests), ("tokens", self.tpm, self.tokens)):
            if per_min:
                full = (per_min / 60.0 * self.burst - level) / (per_min / 60.0)
                out |= {f"x-ratelimit-limit-{name}": f"{per_min:g}",
                        f"x-ratelimit-remaining-{name}": str(max(0, int(level))),
                        f"x-ratelimit-reset-{name}": f"{max(0, round(full * 1000))}ms"}
        if retry_after is not None:
            out["retry-after-ms"] = str(max(1, math.ceil(retry_after * 1000)))
        return out


class FakeLLM:
    """State of one server process: config, counters, and the two pure parts
    (fault draw and reply)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.started = time.time()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.replies = 0
        self.bad_requests = 0
        self.model_listings = 0
        self.faults: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.attempts: dict[bytes, int] = {}
        self.log: deque[tuple[str, int, str | None]] = deque(maxlen=self.config.log_size)
        self.admitted = 0  # requests the hidden budget let through (rpm / tpm set)
        self.admitted_tokens = 0
        self.refused = 0  # requests the hidden budget refused with a 429
        cfg = self.config
        self.budget = Budget(cfg.rpm, cfg.tpm, cfg.burst) if cfg.rpm or cfg.tpm else None

    def decide(self, digest: bytes, structured: bool) -> str | None:
        """Fault kind for this request (None = answer normally)."""
        cfg = self.config
        kind: str | None = None
        attempt = 0
        if cfg.fault_rate > 0:  # attempts are only counted in fault mode, to keep memory flat
            attempt = self.attempts.get(digest, 0)
            self.attempts[digest] = attempt + 1
            draw = hashlib.blake2b(
                digest + attempt.to_bytes(4, "little") + cfg.seed.to_bytes(8, "little", signed=True),
                digest_size=16,
            ).digest()
            u_fault = int.from_bytes(draw[:8], "little") / 2**64
            if u_fault < cfg.fault_rate:
                mix = [(k, w) for k, w in cfg.fault_mix.items() if w > 0 and (structured or k != "bad_schema")]
                total = sum(w for _, w in mix)
                if total > 0:
                    u_kind = int.from_bytes(draw[8:], "little") / 2**64 * total
                    for name, weight in mix:
                        kind = name
                        u_kind -= weight
                        if u_kind < 0:
                            break
        self.log.append((digest.hex(), attempt, kind))
        return kind

    def completion(self, req: dict[str, Any], digest: bytes, content: str | None = None) -> dict[str, Any]:
        """A chat.completion object answering ``req`` (``content`` overrides the text)."""
        rng = random.Random(int.from_bytes(digest, "little") ^ self.config.seed)
        structured, schema = _schema_of(req)
        n = int(req.get("n") or 1)
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        choices = []
        completion_tokens = 0
        for index in range(n):
            finish = "stop"
            if content is not None:
                text = content
            elif structured:
                value = instance_for(schema, rng) if schema else {"reply": rng.choice(_SENTENCES)}
                text = json.dumps(value)
            else:
                text = " ".join(rng.sample(_SENTENCES, rng.randint(1, 3)))
                if limit is not None and len(text) // 4 > int(limit):
                    text, finish = text[: max(int(limit), 1) * 4], "length"
            completion_tokens += max(1, len(text) // 4) if text else 0
            choices.append({
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            })
        prompt_tokens = sum(len(str(m.get("content") or "")) // 4 + 4 for m in req.get("messages", []))
        return {
            "id": "chatcmpl-" + digest.hex(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model") or self.config.model,
            "system_fingerprint": "fp_latency_server",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def stats(self, with_log: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "replies": self.replies,
            "faults": {kind: self.faults.get(kind, 0) for kind in (*FAULT_KINDS, *HOSTILE_KINDS)},
            "faults_total": sum(self.faults.values()),
            "bad_requests": self.bad_requests,
            "admitted": self.admitted,
            "admitted_tokens": self.admitted_tokens,
            "refused": self.refused,
            "budget_level": self.budget.levels() if self.budget is not None else None,
            "model_listings": self.model_listings,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "cpu_s": time.process_time(),
            "uptime_s": time.time() - self.started,
            "config": asdict(self.config),
        }
        if with_log:
            out["log"] = list(self.log)
        return out


def build_app(config: ServerConfig | None = None) -> Starlette:
    """The ASGI app; ``app.state.fake`` is its ``FakeLLM``."""
    fake = FakeLLM(config or ServerConfig())

    async def models(request: Request) -> Response:
        fake.model_listings += 1
        return JSONResponse({
            "object": "list",
            "data": [{"id": fake.config.model, "object": "model", "created": 0, "owned_by": "aloesim-benchmarks"}],
        })

    async def chat(request: Request) -> Response:
        body = await request.body()
        try:
            req = json.loads(body)
            _check(req)
        except (ValueError, TypeError) as err:
            fake.bad_requests += 1
            return _error(400, f"invalid request body: {err}", "invalid_request_error")
        if req.get("stream"):
            fake.bad_requests += 1
            return _error(400, "streaming is not supported by the latency server", "invalid_request_error")
        digest = hashlib.blake2b(body, digest_size=12).digest()
        structured, schema = _schema_of(req)
        cfg = fake.config
        fake.requests += 1
        fake.in_flight += 1
        fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
        try:
            budget_headers: dict[str, str] = {}
            if fake.budget is not None:  # the hidden rate limit, charged on arrival
                reply = fake.completion(req, digest)
                wait = fake.budget.take(reply["usage"]["total_tokens"])
                if wait is not None:
                    fake.refused += 1
                    return _error(429, "Rate limit reached (budget)", "rate_limit_error",
                                  fake.budget.headers(wait) if cfg.rate_headers else None)
                fake.admitted += 1
                fake.admitted_tokens += reply["usage"]["total_tokens"]
                budget_headers = fake.budget.headers() if cfg.rate_headers else {}
            kind = fake.decide(digest, structured)
            if kind == "hang":
                fake.faults[kind] += 1
                await _hang(request, cfg.hang)
                return JSONResponse(fake.completion(req, digest))
            if cfg.latency > 0:
                await asyncio.sleep(cfg.latency)
            if kind is None:
                fake.replies += 1
                return Response(json.dumps(fake.completion(req, digest)), media_type="application/json",
                                headers=budget_headers)
            fake.faults[kind] += 1
            if kind in HOSTILE_KINDS:
                draw = hashlib.blake2b(digest + cfg.seed.to_bytes(8, "little", signed=True)
                                       + fake.attempts.get(digest, 0).to_bytes(4, "little"), digest_size=8).digest()
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                status, headers, content = hostile_reply(
                    kind, fake.completion(req, digest), random.Random(draw), structured=structured,
                    redirect_to=cfg.redirect_to, api_key=token)
                return Response(content, status_code=status, headers=headers)
            if kind == "429":
                return _error(429, "Rate limit reached (injected)", "rate_limit_error",
                              {"Retry-After": f"{cfg.retry_after:g}"})
            if kind == "500":
                return _error(500, "Internal server error (injected)", "server_error")
            if kind == "503":
                return _error(503, "Service unavailable (injected)", "server_error")
            if kind == "empty":
                return Response(json.dumps(fake.completion(req, digest, content="")), media_type="application/json")
            if kind == "bad_schema":
                text = json.dumps(violation_for(schema) if schema else ["not", "an", "object"])
                return Response(json.dumps(fake.completion(req, digest, content=text)), media_type="application/json")
            full = json.dumps(fake.completion(req, digest)).encode()
            if kind == "malformed":
                return Response(full[: len(full) // 2], media_type="application/json")
            return _HalfBody(full)  # disconnect
        finally:
            fake.in_flight -= 1

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        return JSONResponse(fake.stats(with_log=request.query_params.get("log") in ("1", "true")))

    async def configure(request: Request) -> Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("body must be a JSON object")
            reset = bool(changes.pop("reset", False))
            fake.config = fake.config.updated(changes)
        except (ValueError, TypeError) as err:
            return _error(400, str(err), "invalid_request_error")
        if reset:
            fake.reset()
        elif {"rpm", "tpm", "burst"} & set(changes):
            cfg = fake.config
            fake.budget = Budget(cfg.rpm, cfg.tpm, cfg.burst) if cfg.rpm or cfg.tpm else None
        return JSONResponse(asdict(fake.config))

    app = Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/models", models, methods=["GET"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/config", configure, methods=["POST"]),
    ])
    app.state.fake = fake
    return app


def _check(req: Any) -> None:
    """Reject what a real server would reject with 400 (TypeError/ValueError)."""
    if not isinstance(req, dict):
        raise TypeError("body must be a JSON object")
    messages = req.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise TypeError("'messages' must be a list of objects")
    n = req.get("n")
    if n is not None and (not isinstance(n, int) or not 1 <= n <= 128):
        raise ValueError(f"'n' is {n!r}; must be an integer in [1, 128]")
    for key in ("max_tokens", "max_completion_tokens"):
        value = req.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{key!r} is {value!r}; must be a positive integer")


async def _hang(request: Request, seconds: float) -> None:
    """Wait ``seconds`` or until the client closes the connection."""
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass


# --------------------------------------------------------------------------- running it


def _best(module: str, fallback: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return fallback
    return module


def _uvicorn_config(app: Starlette, log_level: str = "warning") -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_QuietHalfBody())
    return uvicorn.Config(
        app,
        loop=_best("uvloop", "asyncio"),
        http=_best("httptools", "h11"),
        access_log=False,
        log_level=log_level,
        backlog=8192,
        timeout_keep_alive=120,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(8192)
    sock.set_inheritable(True)
    return sock


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def serve_in_thread(config: ServerConfig | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Run the server in a background thread of this process on a free port;
    yields its root URL (``http://127.0.0.1:N``; the OpenAI base URL is that
    plus ``/v1``). For quick tests; benchmarks use a separate process
    (``_common.latency_server``) so that server CPU does not count as client CPU."""
    sock = _bind(host, 0)
    app = build_app(config)
    server = uvicorn.Server(_uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("latency server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 = pick a free one)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before every answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability that a request is faulty")
    parser.add_argument("--fault-mix", default="all",
                        help=f"comma list of kind[=weight] among {','.join(FAULT_KINDS)} (default all, equal)")
    parser.add_argument("--seed", type=int, default=0, help="seeds replies and fault draws")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of a 429")
    parser.add_argument("--hang", type=float, default=300.0, help="seconds a hang fault waits at most")
    parser.add_argument("--model", default="latency-server", help="model id listed by /v1/models")
    parser.add_argument("--redirect-to", default="http://127.0.0.1:9/elsewhere",
                        help="where the hostile redirect kinds point")
    parser.add_argument("--rpm", type=float, default=0.0, help="hidden requests-per-minute budget (0 = none)")
    parser.add_argument("--tpm", type=float, default=0.0, help="hidden tokens-per-minute budget (0 = none)")
    parser.add_argument("--burst", type=float, default=1.0, help="seconds of the budget its buckets hold")
    parser.add_argument("--no-rate-headers", action="store_true", help="send no x-ratelimit-* / retry-after")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")
    args = parser.parse_args(argv)
    try:
        config = ServerConfig(latency=args.latency, fault_rate=args.fault_rate, fault_mix=args.fault_mix,
                              seed=args.seed, retry_after=args.retry_after, hang=args.hang, model=args.model,
                              redirect_to=args.redirect_to, rpm=args.rpm, tpm=args.tpm, burst=args.burst,
                              rate_headers=not args.no_rate_headers)
    except ValueError as err:
        print(f"latency_server: {err}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    sock = _bind(args.host, args.port)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(_uvicorn_config(build_app(config), args.log_level)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
