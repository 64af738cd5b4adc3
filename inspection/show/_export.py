"""Export of one tree or one benchmark case to Markdown and JSON.

JSON is the views' ``as_dict()`` (it carries ``version`` and ``kind``).
Markdown escapes every character Markdown or HTML would act on, so text from
the database renders as itself in any Markdown viewer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._calls import CallView
from ._evaluations import CaseView
from ._text import Segment
from ._trees import TreeView

__all__ = ["case_markdown", "md_escape", "to_json", "tree_markdown"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")
_MD_LINE_START = re.compile(r"^(\s*\d*)([#>+\-=.)])", re.MULTILINE)


def md_escape(text: str | None) -> str:
    """Backslash-escape Markdown and HTML punctuation (CommonMark allows it for any ASCII punctuation)."""
    if text is None:
        return ""
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), _MD_SPECIAL.sub(r"\\\1", text))


def _quote(text: str | None) -> str:
    return "\n".join("> " + line if line else ">" for line in md_escape(text).splitlines() or [""])


def _diff(segs: list[Segment]) -> str:
    if not segs:
        return "None"
    out = []
    for s in segs:
        if s.kind == "added" and s.text.strip():
            out.append(f"**{md_escape(s.text)}**")
        elif s.kind == "removed" and s.text.strip():
            out.append(f"~~{md_escape(s.text)}~~")
        elif s.kind == "same":
            out.append(md_escape(s.text))
    return "".join(out)


def _calls_md(calls: list[CallView], prompts: bool) -> list[str]:
    if not calls:
        return []
    lines = [
        "| call | role | latency | prompt tok | compl. tok | attempts | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in calls:
        lat = "-" if c.latency_s is None else f"{c.latency_s:.2f}s"
        lines.append(
            f"| #{c.id} | {md_escape(c.role)} | {lat} | {c.prompt_tokens or '-'} | "
            f"{c.completion_tokens or '-'} | {c.attempts} | {md_escape(c.error or '')} |"
        )
    lines.append("")
    if prompts:
        for c in calls:
            lines.append(f"<details><summary>call #{c.id} {md_escape(c.role)} prompt</summary>\n")
            for m in c.messages:
                lines.append(f"**{md_escape(m['role'])}:**\n\n{_quote(m['content'])}\n")
            lines.append(f"**response:**\n\n{_quote(c.response or '(none)')}\n\n</details>\n")
    return lines


def tree_markdown(tree: TreeView, *, prompts: bool = False) -> str:
    """A tree as Markdown: persona, then per turn the message, the inferred
    persona (new words bold, dropped ones struck), both replies, which continued,
    the judge's verdict and the calls."""
    out = [
        f"# Tree {tree.id} (run {tree.run_id})",
        "",
        f"- mode: {tree.mode}, turns: {tree.turns}, seed: {tree.seed}, status: {tree.status}",
    ]
    if tree.error:
        out.append(f"- error: {md_escape(tree.error)}")
    out += [
        "",
        "## Persona",
        "",
        f"**Profile:** {md_escape(tree.profile)}",
        "",
        f"**Personality:** {md_escape(tree.personality)}",
        "",
    ]
    for n in tree.nodes:
        out += [
            f"## Turn {n.turn}, branch `{n.branch or 'root'}`",
            "",
            "**User:**",
            "",
            _quote(n.user_message),
            "",
            f"**Inferred persona** ({'changed' if n.persona_changed else 'unchanged'}):",
            "",
            f"- profile: {_diff(n.profile_diff)}",
            f"- personalities: {_diff(n.personalities_diff)}",
            "",
        ]
        for which, text in (("preferred", n.preferred), ("rejected", n.rejected)):
            mark = " (continued)" if n.continued in (which, "both") else ""
            out += [f"**{which.capitalize()}{mark}:**", "", _quote(text), ""]
        if n.judge is not None:
            judge = n.judge if isinstance(n.judge, str) else json.dumps(n.judge, ensure_ascii=False)
            out += [f"**Judge:** {md_escape(judge)}", ""]
        out += _calls_md(n.calls, prompts)
    if tree.stray_calls:
        out += ["## Calls without a committed node", ""] + _calls_md(tree.stray_calls, prompts)
    return "\n".join(out).rstrip() + "\n"


def case_markdown(case: CaseView, *, prompts: bool = False) -> str:
    """A benchmark case as Markdown: persona, then each turn with its score."""
    mean = "-" if case.mean_score is None else f"{case.mean_score:.2f}"
    out = [
        f"# Case {case.id} (evaluation {case.evaluation_id}: {md_escape(case.label)}, index {case.case_index})",
        "",
        f"- status: {case.status}, mean score: {mean}",
    ]
    if case.error:
        out.append(f"- error: {md_escape(case.error)}")
    out += [
        "",
        f"**Profile:** {md_escape(case.profile)}",
        "",
        f"**Personality:** {md_escape(case.personality)}",
        "",
    ]
    for t in case.turns:
        score = "-" if t.score is None else str(t.score)
        out += [
            f"## Turn {t.turn} (score {score})",
            "",
            "**User:**",
            "",
            _quote(t.user_message),
            "",
            "**Reply:**",
            "",
            _quote(t.reply),
            "",
        ]
        if t.judge_error:
            out += [f"**Judge error:** {md_escape(t.judge_error)}", ""]
        out += _calls_md(t.calls, prompts)
    return "\n".join(out).rstrip() + "\n"


def to_json(view: Any) -> str:
    """A view as pretty JSON (its ``as_dict()``)."""
    return json.dumps(view.as_dict(), ensure_ascii=False, indent=2) + "\n"
