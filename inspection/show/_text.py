"""Text helpers of the read side: the word-level difference of two texts
(what an inferred persona gained and lost since the previous turn), the text
of a chat message's content, and config differences (the one home of
comparing configs: ``aloe runs``, ``aloe show run=`` and the viewer's run
index all use it)."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Change", "Segment", "config_diff", "config_differences", "diff_words", "flatten"]

Change = Literal["same", "added", "removed"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of text and whether it is new, gone or unchanged since the
    previous turn's inferred persona."""

    kind: Change
    text: str


def _slots(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return json.dumps(value, ensure_ascii=False)


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def diff_words(old: str | None, new: str | None) -> list[Segment]:
    """Word-level difference of two texts: what ``new`` kept, added and dropped."""
    a, b = _TOKEN.findall(old or ""), _TOKEN.findall(new or "")
    out: list[Segment] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(Segment("same", "".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            out.append(Segment("removed", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(Segment("added", "".join(b[j1:j2])))
    merged: list[Segment] = []
    for seg in out:
        if not seg.text:
            continue
        if merged and merged[-1].kind == seg.kind:
            merged[-1] = Segment(seg.kind, merged[-1].text + seg.text)
        else:
            merged.append(seg)
    return merged

def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: {}}
    return {prefix or "(config)": value}


def config_diff(base: Any, other: Any) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose value differs between two configs: (key, base value,
    other value). A key missing on one side and null on the other is no difference."""
    fa, fb = flatten(base), flatten(other)
    out = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        if va != vb:
            out.append((key, va, vb))
    return out


def config_differences(configs: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per run, the dotted keys whose values are not the same in every run of
    ``configs`` ({run id: config}): what ``aloe runs`` lists beside runs of one kind."""
    flats = {rid: flatten(c) for rid, c in configs.items()}
    keys = set().union(*[f.keys() for f in flats.values()]) if flats else set()
    varying = {k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats.values()}) > 1}
    return {rid: {k: f.get(k) for k in sorted(varying)} for rid, f in flats.items()}
