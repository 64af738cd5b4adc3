"""What ``aloe demo`` says at the end about its own numbers: the judge check
of each evaluation (read from its report.json), a plain verdict on whether
the AL/IR figures mean anything, how to point the judge at a stronger
endpoint, and the quality summary of the trees when the read side provides
one (``aloesim.inspection.quality_summary(db) -> list[str]``)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

__all__ = ["judge_lines", "quality_lines"]

STRONGER = "aloe demo agents.judge.backend=openai agents.judge.model=gpt-4o   (key in $OPENAI_API_KEY)"


def _check(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "report.json").read_text())["judge_check"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def judge_lines(out: Path, cfg: DictConfig) -> tuple[dict[str, Any], list[str]]:
    """(the verdict for demo.json, the lines to print)."""
    checks = {name: _check(out / name) for name in ("eval-base", "eval-trained")}
    judge = ((cfg.get("agents") or {}).get("judge") or {})
    who = f"{judge.get('backend')}:{judge.get('model')}" if judge.get("backend") else "the embedded SmolLM2-135M"
    lines = ["", f"Judge check ({who} as the ALOE judge; probes whose right answer is known):"]
    for name, c in checks.items():
        if c is None:
            lines.append(f"  {name:15s} no judge check in its report")
        elif not c.get("pairs"):
            lines.append(f"  {name:15s} not checked: {c.get('reason')}")
        else:
            verdict = "reliable" if c["reliable"] else "UNRELIABLE"
            lines.append(f"  {name:15s} {verdict}: accuracy {c['accuracy']:.2f} on {c['pairs']} probes "
                         f"(95% CI {c['ci'][0]:.2f}-{c['ci'][1]:.2f}; needs >= {c['threshold']:.2f}; 0.50 = blind)")
    found = [c for c in checks.values() if c and c.get("pairs")]
    reliable = bool(found) and all(c["reliable"] for c in found)
    if not found:
        lines.append("  The judge was not checked: nothing says whether the AL/IR figures mean anything.")
    elif reliable:
        lines.append("  The judge tells a reply written for the persona from one written for another: the AL/IR "
                     "figures measure something (at this small scale, with wide intervals).")
    else:
        lines += [f"  {who} cannot tell a reply written for the persona from one written for another:",
                  "  the model is too small to judge, so every AL/IR figure of these reports means nothing",
                  "  (they are marked there). Point the judge at a stronger endpoint:",
                  f"    {STRONGER}"]
    verdict = {"reliable": reliable if found else None, "judge": who,
               "evaluations": {k: (None if c is None else {x: c.get(x) for x in ("pairs", "accuracy", "ci", "reliable")})
                               for k, c in checks.items()}}
    return verdict, lines


def quality_lines(db: str) -> list[str]:
    """The tree quality summary, when the read side provides one (a hook)."""
    try:
        summary = getattr(importlib.import_module("aloesim.inspection"), "quality_summary", None)
    except ImportError:
        return []
    if summary is None:
        return []
    try:
        got = summary(db)
    except Exception as exc:  # noqa: BLE001 - the demo's outputs are written; a summary failing is only reported
        return ["", f"Tree quality: could not be summarised ({type(exc).__name__}: {exc})"]
    return ["", "Tree quality:", *(f"  {line}" for line in ([got] if isinstance(got, str) else got))]
