"""Benchmark files in the published ALOE format (github.com/ShujinWu-0814/ALOE,
datasets/profile_eval.jsonl and personality_eval.jsonl): one JSON string per
line, ``\\u2019``-style escapes, no newline after the last line. Written with
invented texts of the same shape (20 profiles, 7 personalities), and with one
line holding two JSON values, as the published profile.jsonl's line 6 does: the
readers take it as two items, as ``aloe personas`` imports do."""

from __future__ import annotations

import json
from pathlib import Path

PROFILES = 20
PERSONALITIES = 7


def profile(i: int) -> str:
    return (f"He is a {25 + i}-year-old carpenter number {i} who enjoys kayaking. He is married with {i % 3} "
            "children and has a certificate in woodworking. He builds furniture for friends\u2019 homes.")


def personality(j: int) -> str:
    return (f"She is calm number {j}, rarely letting stress get to her. She is witty, making clever jokes. "
            "She is loyal, standing by loved ones\u2019 sides.")


def write_published(folder: Path, *, profiles: int = PROFILES, personalities: int = PERSONALITIES,
                    doubled_line: int | None = 6) -> tuple[Path, Path]:
    """``profile_eval.jsonl`` and ``personality_eval.jsonl`` in ``folder``; with
    ``doubled_line`` the profiles of lines ``doubled_line`` and the next share one line."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(profile(i)) for i in range(profiles)]  # ensure_ascii: the published \u2019 escapes
    if doubled_line is not None:
        i = doubled_line - 1
        lines[i: i + 2] = [lines[i] + lines[i + 1]]
    p, q = folder / "profile_eval.jsonl", folder / "personality_eval.jsonl"
    p.write_text("\n".join(lines))
    q.write_text("\n".join(json.dumps(personality(j)) for j in range(personalities)))
    return p, q
